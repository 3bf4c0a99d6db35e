"""One writer for fer-edge model bundles: `bundle.json` beside the model file.

In: the bundle folder and the manifest's fields (as each exporter knows
them). Out: `bundle.json`, with the format tag first, the model file's
sha256 computed here from the file itself, empty (None) fields dropped, and
the fields fer-edge requires checked before anything is written.

Used by `python -m emotion_gcn.export`, `python -m emotion_gcn.fer2013
export` and `tools/convert_fer_minixception.py`; plain Python (no torch),
so any of their venvs can import it.
"""

import hashlib
import json
import os

FORMAT = "fer-edge-bundle/1"

# What fer-edge's manifest reader (src/models.rs) cannot do without.
REQUIRED = ("name", "version", "architecture", "trained", "source", "license", "model_file",
            "input", "outputs", "classes", "va_source", "alignment")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_bundle(out, fields):
    """Writes `out/bundle.json` from `fields`; returns the manifest written.

    `fields["model_file"]` names the model inside `out`; its sha256 goes in
    right after it (or replaces a `sha256` field already there, in place).
    """
    missing = [k for k in REQUIRED if fields.get(k) is None]
    if missing:
        raise SystemExit(f"bundle manifest for {out} lacks {', '.join(missing)}")
    model_path = os.path.join(out, fields["model_file"])
    if not os.path.isfile(model_path):
        raise SystemExit(f"bundle {out}: model file {model_path} does not exist; export the model first")
    digest = sha256_file(model_path)
    manifest = {"format": FORMAT}
    for k, v in fields.items():
        if v is None or k in ("format", "sha256"):
            continue
        manifest[k] = v
        if k == "model_file":
            manifest["sha256"] = digest
    with open(os.path.join(out, "bundle.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return manifest
