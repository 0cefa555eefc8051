// The manifests source: Kubernetes objects from files, exactly as
// `kubectl get services,endpointslices,nodes -A -o yaml|json` prints them.
// Decoding validates every field svcproxy uses; an object that cannot be used
// is skipped with a diagnostic naming file, object and field, and every other
// object is still returned.
//
// A stream is split at document markers (`---`, `...` at column 0) before
// parsing, so a malformed document costs only itself. Kinds other than
// Service, EndpointSlice, Node and ServiceCIDR, and same-named kinds of other
// API groups, are ignored silently. An object seen twice (same kind and
// namespace/name, in this stream or one decoded earlier into the same result)
// keeps its first definition; the later one is reported.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/objects.h"

namespace svcproxy::watch {

struct Diagnostic {
  std::string file;    // path as given (or "<string>")
  std::string kind;    // "Service", "EndpointSlice", ... ; empty if unknown
  // "namespace/name" ("name" for cluster-scoped kinds), or "document N"
  // (1-based, counting non-empty documents of the file) while the object has
  // no usable name; empty for errors about the whole file.
  std::string object;
  // Relative to the object, e.g. "spec.ports[0].port"; relative to the
  // document ("items[3].metadata.name") when `object` is "document N"; empty
  // for whole-document errors.
  std::string field;
  std::string message;  // ends with "(line L)" when the line is known
  // What is unknown because of it: one object (skipped, the rest of the
  // stream is read), a whole file (a document of it does not parse, so what
  // the file was meant to hold is unknown: a file caught half written), or
  // what the path holds (the path, or a file of it, cannot be read).
  enum class Scope { SingleObject, File, Unreadable };
  Scope scope = Scope::SingleObject;
  // One line: "<file>: skipped <kind> <object>: <field>: <message>", empty
  // parts (and their separators) left out.
  std::string str() const;
};

struct DecodeResult {
  model::ClusterState state;  // sorted
  std::vector<Diagnostic> diagnostics;
};

// How a stream is read: JSON with simdjson (fast; anything that is not one
// valid JSON document falls back to the YAML reader, which also reads JSON
// and reports syntax errors by line), or YAML with yaml-cpp. Both apply the
// same field rules and produce the same diagnostics. ByName: JSON when the
// name ends in ".json".
enum class ManifestFormat { ByName, Yaml, Json };

// How JSON is read: through one buffer of `json_buffer_bytes`, reused item
// after item of a List and grown only while one item does not fit (the
// diagnostics do not depend on it; tests shrink it to cut items anywhere).
struct ReadOptions {
  size_t json_buffer_bytes = size_t{1} << 20;
};

// Decodes one document stream (multi-document YAML or JSON) from memory.
// `origin` names the source in diagnostics. Appends to `out`.
void decode_manifests(std::string_view text, const std::string& origin, DecodeResult& out,
                      ManifestFormat format = ManifestFormat::ByName, const ReadOptions& options = {});

// The same for JSON already in memory with 64 readable bytes after it (no
// copy; what decode_manifests does for Json after copying into such a buffer).
void decode_manifests_json_padded(std::string_view text, const std::string& origin, DecodeResult& out);

// Reads a file, or every *.yaml / *.yml / *.json in a directory (sorted by
// name, not recursive); *.json through simdjson, streamed from a regular file
// (memory stays at one buffer and one item's DOM, whatever the file's size).
// A path that does not exist or cannot be read, or a file that cannot be, is
// a Diagnostic of scope Unreadable: the result is then not the cluster.
DecodeResult load_manifests(const std::string& path, const ReadOptions& options = {});

// The two steps of load_manifests, for a caller that keeps track per file
// (ManifestsSource). The files `path` names: itself, or the manifest files of
// a directory, sorted by name; nullopt (and `error`, scope Unreadable) when
// the path cannot be read.
std::optional<std::vector<std::string>> manifest_files(const std::string& path, Diagnostic& error);
// Decodes one file into `out` (an object already in `out` wins over a later
// duplicate). `listed`: the file was found by listing a directory, so if it
// has vanished since (deleted meanwhile), it adds nothing rather than being
// unreadable.
void load_manifest_file(const std::string& file, bool listed, DecodeResult& out, const ReadOptions& options = {});

}  // namespace svcproxy::watch
