// Reference outputs of the ORIGINAL CenterNet TF.js graph, run by TensorFlow.js
// itself (pure-JavaScript CPU backend, npm @tensorflow/tfjs 4.22.0) -- used once
// by scripts/make_centernet_reference.py to write tests/data/centernet_reference.json.
// Usage: node centernet_reference.mjs MODEL_DIR IN_DIR   (IN_DIR/*.f32: 512x512x3 float32)
// Writes IN_DIR/<name>.det.f32 (100x6) and IN_DIR/<name>.kp.f32 (128x128x80).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(path.join(process.cwd(), 'node_modules', 'x.js'));
const tf = require('@tensorflow/tfjs');

const [modelDir, inDir] = process.argv.slice(2);
const g = JSON.parse(fs.readFileSync(path.join(modelDir, 'centernet.json'), 'utf8'));
const specs = [];
const blobs = [];
for (const group of g.weightsManifest) {
  specs.push(...group.weights);
  for (const p of group.paths) blobs.push(fs.readFileSync(path.join(modelDir, p)));
}
const all = Buffer.concat(blobs);
const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
await tf.setBackend('cpu');
const model = await tf.loadGraphModel(tf.io.fromMemory({
  modelTopology: g.modelTopology, format: g.format, generatedBy: g.generatedBy, convertedBy: g.convertedBy,
  weightSpecs: specs, weightData, signature: g.signature,
}));
console.log('tfjs', tf.version.tfjs, 'backend', tf.getBackend());
for (const f of fs.readdirSync(inDir).filter((n) => n.endsWith('.in.f32')).sort()) {
  const buf = fs.readFileSync(path.join(inDir, f));
  const x = tf.tensor4d(new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4), [1, 512, 512, 3]);
  const t0 = Date.now();
  const [det, kp] = await model.executeAsync(x, ['tower_0/detections', 'tower_0/keypoints']);
  const name = f.slice(0, -'.in.f32'.length);
  fs.writeFileSync(path.join(inDir, name + '.det.f32'), Buffer.from((await det.data()).buffer));
  fs.writeFileSync(path.join(inDir, name + '.kp.f32'), Buffer.from((await kp.data()).buffer));
  console.log(name, Date.now() - t0, 'ms');
  tf.dispose([x, det, kp]);
}
