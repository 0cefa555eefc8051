// The manifests source: Kubernetes objects from files, exactly as
// `kubectl get services,endpointslices,nodes -A -o yaml|json` prints them.
// Decoding validates every field svcproxy uses; an object that cannot be used
// is skipped with a diagnostic naming file, object and field, and every other
// object is still returned.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "model/objects.h"

namespace svcproxy::watch {

struct Diagnostic {
  std::string file;    // path as given (or "<string>")
  std::string kind;    // "Service", "EndpointSlice", ... ; empty if unknown
  std::string object;  // "namespace/name" or "document N" when unnamed
  std::string field;   // e.g. "spec.ports[0].port"; empty for whole-document errors
  std::string message;
  // One line: "<file>: skipped <kind> <object>: <field>: <message>"
  std::string str() const;
};

struct DecodeResult {
  model::ClusterState state;  // sorted
  std::vector<Diagnostic> diagnostics;
};

// Decodes one document stream (multi-document YAML or JSON) from memory.
// `origin` names the source in diagnostics. Appends to `out`.
void decode_manifests(std::string_view text, const std::string& origin, DecodeResult& out);

// Reads a file, or every *.yaml / *.yml / *.json in a directory (sorted by
// name, not recursive). An unreadable path is a Diagnostic with empty kind.
DecodeResult load_manifests(const std::string& path);

}  // namespace svcproxy::watch
