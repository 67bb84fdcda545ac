"""Validates every manifest under k8s/ offline (`npm run test:k8s`, through scripts/k8s-validate.sh).

Built-in kinds against the Kubernetes schemas bundled with kubernetes-validate (strict: an unknown
field is an error); the operators' custom resources against the schemas in k8s/schemas/ (made from
their CRDs by scripts/k8s-crd-schema.py). kustomization.yaml must list exactly the manifests there
are. Then each manifest is broken on purpose (an unknown field added) and must be refused,
so that a validator that accepts anything cannot pass. Prints "N passed, N failed"; exits 1 on a
failure.
"""

import copy
import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

K8S = pathlib.Path(__file__).resolve().parent.parent / "k8s"
KUBERNETES_VERSION = "1.37.0"

custom = {}
for path in sorted((K8S / "schemas").glob("*.json")):
    schema = json.loads(path.read_text())
    custom[(schema["x-apiVersion"], schema["x-kind"])] = schema

passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print(f"[k8s] PASS {what}")
    else:
        failed += 1
        print(f"[k8s] FAIL {what}", file=sys.stderr)


def problems(document):
    """Why the document is invalid, or None."""
    key = (document.get("apiVersion"), document.get("kind"))
    if key in custom:
        errors = sorted(jsonschema.Draft4Validator(custom[key]).iter_errors(document), key=str)
        if not document.get("metadata", {}).get("name"):
            return "metadata.name is missing"
        return "; ".join(f"{'.'.join(map(str, error.path))}: {error.message}" for error in errors) or None
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return f"no schema for {key[0]} {key[1]}, neither Kubernetes' nor in k8s/schemas/"
    except kubernetes_validate.ValidationError as error:
        return f"{'.'.join(map(str, error.path))}: {error.message}"
    return None


kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
manifests = sorted(path.name for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")
check(sorted(kustomization["resources"]) == manifests, f"kustomization.yaml lists every manifest: {', '.join(manifests)}")

for name in manifests:
    for document in yaml.safe_load_all((K8S / name).read_text()):
        if document is None:
            continue
        what = f"{name}: {document['kind']} {document['metadata']['name']}"
        problem = problems(document)
        check(problem is None, f"{what} is valid" + (f" (invalid: {problem})" if problem else ""))
        broken = {**copy.deepcopy(document), "notAField": True}
        check(problems(broken) is not None, f"{what} with a broken field is refused")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
