"""Turns an operator's CustomResourceDefinition into the small JSON schema that
scripts/k8s-validate.py checks the project's custom resources against (k8s/schemas/).

    python scripts/k8s-crd-schema.py CRD.yaml VERSION SOURCE > k8s/schemas/KIND.json

Kept: the served version's openAPIV3Schema, with unknown fields refused where the CRD lists the
fields (the API server would drop them silently: a typo would go unnoticed). Dropped, so that the
files stay small: descriptions, and the subtrees under the keys in OPAQUE (a pod template override
and the like), which the project's resources do not use and which stay accepted as any object.
"""

import json
import sys

import yaml

OPAQUE = {"override", "affinity", "tolerations", "topologySpreadConstraints", "statefulSet", "podTemplate"}


def prune(node, key=None):
    if not isinstance(node, dict):
        return node
    if key in OPAQUE:
        return {"type": node.get("type", "object")}
    out = {}
    for name, value in node.items():
        if name in ("description", "example"):
            continue
        if name == "properties":
            out[name] = {prop: prune(schema, prop) for prop, schema in value.items()}
        elif name in ("items", "additionalProperties") and isinstance(value, dict):
            out[name] = prune(value)
        elif name in ("anyOf", "allOf", "oneOf"):
            out[name] = [prune(item) for item in value]
        else:
            out[name] = value
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and not preserve and "additionalProperties" not in out:
        out["additionalProperties"] = False
    for name in [name for name in out if name.startswith("x-kubernetes-")]:
        del out[name]
    return out


def main(path, version, source):
    crd = yaml.safe_load(open(path))
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    schema = prune(served["schema"]["openAPIV3Schema"])
    # apiVersion, kind and metadata are checked by the validator itself.
    for name in ("apiVersion", "kind", "metadata"):
        schema["properties"][name] = {"type": "string"} if name != "metadata" else {"type": "object"}
    schema.pop("status", None)
    schema["properties"].pop("status", None)
    group = crd["spec"]["group"]
    schema = {
        "$comment": f"{crd['spec']['names']['kind']} {group}/{version}, from {source} by scripts/k8s-crd-schema.py",
        "x-apiVersion": f"{group}/{version}",
        "x-kind": crd["spec"]["names"]["kind"],
        **schema,
    }
    json.dump(schema, sys.stdout, separators=(",", ":"), sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
