"""Multi-SC (Huang & Li, "Exploring textual semantics diversity for image
transmission ... using visual language model", seed 001): main-object slice,
object regions merged by centre-distance feature fusion (eq. 9), one VLM
caption per region sent on its own channel, BART-style spelling correction,
IP-Adapter generation from all captions + the slice (eq. 7, 12).

torch/numpy only (no GNU Radio); gr_semcom/multisc_link.py puts it on the PHY.
"""
