"""Which build is running: the package version and the Git commit it was built from. Read by
`torghut --version`, the start-up banner and `torghut_build_info`; imports nothing heavy."""

from __future__ import annotations

import functools

BUILD_COMMIT_FILE = "BUILD_COMMIT"  # written into the package by the image build (Dockerfile)
UNKNOWN = "unknown"


@functools.cache
def build_details() -> dict[str, str]:
    """`version` and `git_commit` ("unknown" outside an image build, which writes the commit
    into the package as `BUILD_COMMIT`)."""
    # Imported here, when asked: `--help` and the logging set-up import this module too.
    from importlib import metadata, resources

    try:
        version = metadata.version("torghut")
    except metadata.PackageNotFoundError:
        version = UNKNOWN
    try:
        commit = (resources.files("torghut") / BUILD_COMMIT_FILE).read_text("utf-8").strip()
    except OSError:
        commit = ""
    return {"version": version, "git_commit": commit or UNKNOWN}


def version_line() -> str:
    details = build_details()
    return f"torghut {details['version']} (commit {details['git_commit']})"
