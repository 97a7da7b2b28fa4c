"""Code that runs next to the artifact: on this machine, or copied to a device over SSH or ADB.

Self-contained on purpose: it imports only the standard library, numpy, the
artifact's backend's ``runtime.py`` (copied with it) and that backend's vendor
runtime, never the rest of edgekd, so a Raspberry Pi or a Jetson needs nothing
else installed. ``python -m edgekd.ondevice.bench --help`` describes the
device-side benchmark.
"""
