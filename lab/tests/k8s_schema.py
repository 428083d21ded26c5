"""Reads Kubernetes manifests and validates every document against the Kubernetes
OpenAPI schemas bundled in the `kubernetes-validate` package (no network), strictly:
an unknown field is an error. Used by lab/tests/k8s.rs, which does the rest of the
checking on what this prints.

    python3 k8s_schema.py VERSION[,VERSION…] FILE…

Prints one JSON object: {"checker": its version, "documents": [{"file", "index",
"object"}], "errors": [{"file", "index", "what", "version", "error"}]}, and exits 0
whenever it could run; 3, with {"missing": why}, if the package cannot be imported.
YAML is read as kubectl reads it in one respect the YAML library does not: a key given
twice in one mapping is an error, not a silent overwrite.
"""

import json
import sys

try:
    import yaml
    import kubernetes_validate.utils as kv
    from kubernetes_validate.version import __version__
except ImportError as e:  # the Rust side turns this into a message saying what to do
    print(json.dumps({"missing": str(e)}))
    sys.exit(3)


class UniqueKeyLoader(yaml.SafeLoader):
    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, "key %r given twice in one mapping" % (key,), key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def describe(doc):
    if not isinstance(doc, dict):
        return "a document that is not a mapping"
    name = (doc.get("metadata") or {}).get("name", "?")
    return "%s/%s" % (doc.get("kind", "?"), name)


def main():
    versions = sys.argv[1].split(",")
    out = {"checker": __version__, "documents": [], "errors": []}

    def error(path, index, what, version, message):
        out["errors"].append({"file": path, "index": index, "what": what, "version": version, "error": message})

    for path in sys.argv[2:]:
        try:
            with open(path) as f:
                docs = list(yaml.load_all(f, Loader=UniqueKeyLoader))
        except (OSError, yaml.YAMLError) as e:
            error(path, None, "the file", None, str(e))
            continue
        for index, doc in enumerate(docs):
            if doc is None:
                continue
            what = describe(doc)
            out["documents"].append({"file": path, "index": index, "object": doc})
            if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
                error(path, index, what, None, "not a Kubernetes object (no apiVersion or kind)")
                continue
            for version in versions:
                try:
                    kv.validate(doc, version, strict=True)
                except kv.ValidationError as e:
                    where = ".".join(str(p) for p in e.path) or "(top)"
                    error(path, index, what, version, "%s: %s" % (where, e.message))
                except (kv.SchemaNotFoundError, kv.VersionNotSupportedError, kv.InvalidSchemaError) as e:
                    error(path, index, what, version, e.message)
    json.dump(out, sys.stdout)


main()
