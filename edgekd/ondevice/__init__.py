"""Code that runs next to the artifact: on this machine, or copied to a device over SSH or ADB.

Self-contained on purpose: it imports only the standard library, numpy and the
runtime of the artifact it runs (onnxruntime, openvino, ai-edge-litert or
tflite-runtime, tensorrt, coremltools), never the rest of edgekd, so a
Raspberry Pi or a Jetson needs nothing else installed. ``python -m
edgekd.ondevice.bench --help`` describes the device-side benchmark.
"""
