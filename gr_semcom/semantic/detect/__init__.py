"""Object detection that names things, offline (issue 20): a COCO CenterNet
(MobileNetV3) converted once from its TF.js graph to ONNX
(:mod:`.tfjs_onnx`) and run with onnxruntime (:mod:`.centernet`)."""
