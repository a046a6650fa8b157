"""Images from conda specs without a container daemon: solve and install with py-rattler (`solve`, `build`), lay
out reproducible layers on a Debian-based root filesystem (`rootfs`, `oci`), push with the OCI distribution API
(`registry`). `qhubctl images` is in `cli`; docs/images.md describes the whole."""
