"""`qhubctl images ...`: build images from conda specs or system specs, without a container daemon."""

from __future__ import annotations

from pathlib import Path

import typer

from qhubctl.commands._common import handles_errors
from qhubctl.errors import UserError

app = typer.Typer(
    name="images",
    help="Build OCI images from conda or system (Debian, Go) specs and push them, without a container daemon.",
    no_args_is_help=True,
)


def _say(msg: str) -> None:
    typer.echo(msg, err=True)


@app.command("build")
@handles_errors
def build_cmd(
    spec: Path = typer.Argument(..., help="Spec directory: environment.yaml or a `kind: system` image.yaml."),
    tag: str = typer.Option(..., "--tag", "-t", help="Image name and tag, e.g. qhub/jupyterlab:0.1.0."),
    push: str = typer.Option("", "--push", help="Registry to push to: HOST, HOST:PORT or HOST:PORT/NAMESPACE."),
    oci_layout: Path = typer.Option(None, "--oci-layout", help="Write the image into this OCI layout directory."),
    docker_archive: Path = typer.Option(None, "--docker-archive", help="Write a `docker load` archive here."),
    relock: bool = typer.Option(False, "--relock", help="Solve afresh even if the lock file still fits the spec."),
) -> None:
    """Resolve, fetch and lay out SPEC as an image; then push it or save it.

    Prints REF@DIGEST on standard output; progress goes to standard error.
    """
    from qhubctl.images import registry
    from qhubctl.images.build import build
    from qhubctl.images.oci import write_docker_archive, write_oci_layout

    if sum(bool(x) for x in (push, oci_layout, docker_archive)) > 1:
        raise UserError("give at most one of --push, --oci-layout, --docker-archive")
    # Check the destination before the (possibly long) build, so a typo fails at once.
    target = registry.parse_target(push or "localhost", tag)
    result = build(spec, relock=relock, log=_say, version=target.tag)
    image = result.image
    _say(
        f"built {target.repository}:{target.tag} {image.manifest_digest} "
        f"({len(image.layers)} layers, {image.size} bytes, {result.seconds:.1f}s)"
    )
    if push:
        report = registry.push(image, target, log=_say)
        _say(
            f"pushed {target.reference}: {len(report.uploaded)} blobs uploaded "
            f"({report.bytes_uploaded} bytes), {len(report.skipped)} already there"
        )
        typer.echo(f"{target.reference}@{image.manifest_digest}")
        return
    ref = f"{target.repository}:{target.tag}"
    if oci_layout:
        write_oci_layout(image, oci_layout, target.tag)
        _say(f"wrote OCI layout {oci_layout} (ref {target.tag})")
    if docker_archive:
        write_docker_archive(image, docker_archive, ref)
        _say(f"wrote docker archive {docker_archive} ({ref})")
    typer.echo(f"{ref}@{image.manifest_digest}")


@app.command("lock")
@handles_errors
def lock_cmd(
    spec: Path = typer.Argument(..., help="Spec directory."),
    relock: bool = typer.Option(False, "--relock", help="Solve afresh even if the lock file still fits the spec."),
) -> None:
    """Solve SPEC and write its lock files (environment.lock, base.lock.json; system.lock.json) without pushing."""
    from qhubctl.images import rootfs
    from qhubctl.images.solve import solve
    from qhubctl.images.spec import load_spec, spec_kind

    if spec_kind(spec) == "system":
        from qhubctl.images.system import build_system

        result = build_system(spec, relock=relock, log=_say)  # Go binaries are locked by their sha256
        for deb in result.debs:
            typer.echo(f"debian {deb.name} {deb.version}")
        for built in result.go:
            typer.echo(f"go {built.binary.name} {built.binary.package}@{built.binary.version or 'spec'} {built.sha256}")
        _say(f"{result.spec.lock_path}: {'written' if result.relocked else 'up to date'}")
        return
    loaded = load_spec(spec)
    records, written = solve(loaded, glibc=lambda: rootfs.glibc_version(rootfs.fetch_base(loaded)), relock=relock)
    for record in records:
        typer.echo(f"{record.name.normalized} {record.version} {record.build}")
    _say(f"{loaded.lock_path}: {'written' if written else 'up to date'}")


@app.command("tag")
@handles_errors
def tag_cmd(
    spec: Path = typer.Argument(..., help="Spec directory."),
    namespace: str = typer.Option("qhub", "--namespace", help="Repository namespace."),
    app_version: str = typer.Option("", "--app-version", help="Tag of specs without `version:` (the chart's "
                                    "appVersion)."),
) -> None:
    """Print the reference SPEC is published under: NAMESPACE/<name>:<version>, the version from image.yaml or,
    for specs without one, --app-version."""
    from qhubctl.images.spec import published_tag

    typer.echo(published_tag(spec, namespace, app_version))
