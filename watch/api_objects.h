// Decoding what the API server sends: LIST responses, watch events and Status
// objects (JSON, through simdjson), into the model with the same field rules
// and diagnostics as the manifests decoder. An object that fails to decode
// becomes a BadObject (the rest of the list or stream goes on); nothing here
// throws or crashes on any input.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "model/objects.h"

namespace svcproxy::watch {

// The resources svcproxy watches.
enum class Resource { Services, EndpointSlices, Nodes, ServiceCIDRs };
std::string_view kind_name(Resource resource);  // "Service", ...

using Object = std::variant<model::Service, model::EndpointSlice, model::Node, model::ServiceCIDR>;

// namespace/name ("" namespace for cluster-scoped kinds).
model::ObjectRef object_key(const Object& object);

struct BadObject {
  std::string kind;
  model::ObjectRef ref;           // name empty when the object has none
  std::string resource_version;   // may be empty
  std::string field;              // e.g. "spec.ports[0].port"; empty for the whole object
  std::string message;
  // "skipped Service ns/name: spec.ports[0].port: 0 is out of range 1..65535"
  std::string str() const;
};

// A metav1.Status (error replies and watch ERROR events).
struct ApiStatus {
  int code = 0;
  std::string reason;
  std::string message;
};

struct ListPage {
  std::string resource_version;  // metadata.resourceVersion
  std::string continue_token;    // metadata.continue; empty on the last page
  std::vector<Object> objects;
  std::vector<BadObject> bad;
};

enum class EventType { Added, Modified, Deleted, Bookmark, Error };
std::string_view to_string(EventType type);

struct WatchEvent {
  EventType type = EventType::Added;
  std::string resource_version;  // of the object (Bookmark: the only field)
  std::optional<Object> object;  // Added/Modified/Deleted with a usable object
  std::optional<BadObject> bad;  // Added/Modified/Deleted with an unusable one
  ApiStatus status;              // Error
  bool initial_events_end = false;  // Bookmark annotated k8s.io/initial-events-end
};

class ApiDecoder {
 public:
  // Bytes that must be readable after a buffer handed to decode_list.
  static constexpr size_t kPadding = 64;

  ApiDecoder();
  ~ApiDecoder();
  ApiDecoder(const ApiDecoder&) = delete;
  ApiDecoder& operator=(const ApiDecoder&) = delete;

  // A LIST reply (ServiceList...). `body` must be followed by kPadding
  // readable bytes. False (with `error`) when the reply is not a list.
  bool decode_list(std::string_view body, Resource resource, ListPage& out, std::string& error);
  // One line of a watch stream. False (with `error`) when the line is not an
  // event at all; a bad object inside a good event is `out.bad`.
  bool decode_event(std::string_view line, Resource resource, WatchEvent& out, std::string& error);
  // A Status reply body; false when it is not one.
  bool decode_status(std::string_view body, ApiStatus& out);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace svcproxy::watch
