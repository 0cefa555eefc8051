#include "watch/api_objects.h"

#include <simdjson.h>

#include "watch/decode_rules.h"
#include "watch/json_node.h"

namespace svcproxy::watch {
namespace {

using detail::FieldError;
using detail::JsonNode;
using detail::KindId;
using detail::KindSpec;
using F = detail::Field<JsonNode>;
namespace dom = simdjson::dom;

static_assert(ApiDecoder::kPadding >= simdjson::SIMDJSON_PADDING);

const KindSpec& spec_of(Resource resource) {
  switch (resource) {
    case Resource::Services:
      return detail::kind_spec(KindId::Service);
    case Resource::EndpointSlices:
      return detail::kind_spec(KindId::EndpointSlice);
    case Resource::Nodes:
      return detail::kind_spec(KindId::Node);
    case Resource::ServiceCIDRs:
      break;
  }
  return detail::kind_spec(KindId::ServiceCIDR);
}

std::string_view string_at(dom::element element, const char* key) {
  std::string_view out;
  if (element.is_object() && !element[key].get(out)) return out;
  return {};
}

// One item of a list or the object of an event, of a known kind.
bool decode_item(dom::element root, const KindSpec& spec, std::optional<Object>& object, BadObject& bad) {
  const F field = F::object(JsonNode(root));
  bad = BadObject();
  bad.kind = std::string(spec.kind);
  try {
    field.expect_map();
    const F kind = field.get("kind");
    if (const std::string_view own = kind.text(); !own.empty() && own != spec.kind) {
      kind.fail("expected " + std::string(spec.kind) + ", got " + detail::quote(own));
    }
    model::ObjectRef ref = detail::object_ref(field, spec.namespaced);
    bad.ref = ref;
    bad.resource_version = field.get("metadata").get("resourceVersion").text();
    switch (spec.id) {
      case KindId::Service:
        object = detail::decode_service(field, std::move(ref));
        break;
      case KindId::EndpointSlice:
        object = detail::decode_endpoint_slice(field, std::move(ref));
        break;
      case KindId::Node:
        object = detail::decode_node(field, std::move(ref));
        break;
      case KindId::ServiceCIDR:
        object = detail::decode_service_cidr(field, std::move(ref));
        break;
    }
    return true;
  } catch (const FieldError& e) {
    bad.field = e.field;
    bad.message = e.message;
  } catch (const std::exception& e) {
    bad.message = e.what();
  }
  object.reset();
  return false;
}

void decode_status_object(dom::element object, ApiStatus& out) {
  out = ApiStatus();
  int64_t code = 0;
  if (object.is_object() && !object["code"].get(code)) out.code = static_cast<int>(code);
  out.reason = string_at(object, "reason");
  out.message = string_at(object, "message");
}

}  // namespace

std::string_view kind_name(Resource resource) { return spec_of(resource).kind; }

std::string_view to_string(EventType type) {
  switch (type) {
    case EventType::Added:
      return "ADDED";
    case EventType::Modified:
      return "MODIFIED";
    case EventType::Deleted:
      return "DELETED";
    case EventType::Bookmark:
      return "BOOKMARK";
    case EventType::Error:
      break;
  }
  return "ERROR";
}

model::ObjectRef object_key(const Object& object) {
  return std::visit(
      [](const auto& o) -> model::ObjectRef {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, model::Node> || std::is_same_v<T, model::ServiceCIDR>) {
          return {"", o.name};
        } else {
          return o.ref;
        }
      },
      object);
}

std::string BadObject::str() const {
  std::string out = "skipped " + kind;
  if (!ref.name.empty()) out += " " + ref.str();
  out += ": ";
  if (!field.empty()) out += field + ": ";
  out += message;
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

struct ApiDecoder::Impl {
  dom::parser parser;
};

ApiDecoder::ApiDecoder() : impl_(std::make_unique<Impl>()) {}
ApiDecoder::~ApiDecoder() = default;

bool ApiDecoder::decode_list(std::string_view body, Resource resource, ListPage& out, std::string& error) {
  out = ListPage();
  const KindSpec& spec = spec_of(resource);
  dom::parser& parser = impl_->parser;
  auto add = [&](dom::element item) {
    std::optional<Object> object;
    BadObject bad;
    if (decode_item(item, spec, object, bad)) {
      out.objects.push_back(std::move(*object));
    } else {
      out.bad.push_back(std::move(bad));
    }
  };
  auto metadata = [&](dom::element meta) {
    out.resource_version = string_at(meta, "resourceVersion");
    out.continue_token = string_at(meta, "continue");
  };

  detail::JsonListView view;
  if (detail::split_json_list(body, view) && view.has_items) {
    // Item by item: memory stays at one item's DOM whatever the list's size.
    out.objects.reserve(view.items.size());
    for (const std::string_view item : view.items) {
      dom::element root;
      if (const auto code = parser.parse(item.data(), item.size(), false).get(root)) {
        error = std::string("malformed JSON in a list item: ") + simdjson::error_message(code);
        return false;
      }
      add(root);
    }
    if (!view.metadata.empty()) {
      dom::element meta;
      if (parser.parse(view.metadata.data(), view.metadata.size(), false).get(meta)) {
        error = "malformed list metadata";
        return false;
      }
      metadata(meta);
    }
    return true;
  }

  dom::element root;
  if (const auto code = parser.parse(body.data(), body.size(), false).get(root)) {
    error = std::string("malformed JSON: ") + simdjson::error_message(code);
    return false;
  }
  if (string_at(root, "kind") == "Status") {
    ApiStatus status;
    decode_status_object(root, status);
    error = "the server answered with a Status: " + status.message;
    return false;
  }
  dom::array items;
  if (!root.is_object() || root["items"].get(items)) {
    error = "not a list (no items)";
    return false;
  }
  for (dom::element item : items) add(item);
  dom::element meta;
  if (!root["metadata"].get(meta)) metadata(meta);
  return true;
}

bool ApiDecoder::decode_event(std::string_view line, Resource resource, WatchEvent& out, std::string& error) {
  out = WatchEvent();
  dom::element root;
  if (const auto code = impl_->parser.parse(line.data(), line.size(), true).get(root)) {
    error = std::string("malformed watch event: ") + simdjson::error_message(code);
    return false;
  }
  const std::string_view type = string_at(root, "type");
  dom::element object;
  if (!root.is_object() || root["object"].get(object) || !object.is_object()) {
    error = "a watch event without an object";
    return false;
  }
  if (type == "ADDED") {
    out.type = EventType::Added;
  } else if (type == "MODIFIED") {
    out.type = EventType::Modified;
  } else if (type == "DELETED") {
    out.type = EventType::Deleted;
  } else if (type == "BOOKMARK") {
    out.type = EventType::Bookmark;
    dom::element metadata;
    if (!object["metadata"].get(metadata)) {
      out.resource_version = string_at(metadata, "resourceVersion");
      dom::element annotations;
      if (!metadata["annotations"].get(annotations)) {
        out.initial_events_end = string_at(annotations, "k8s.io/initial-events-end") == "true";
      }
    }
    return true;
  } else if (type == "ERROR") {
    out.type = EventType::Error;
    decode_status_object(object, out.status);
    return true;
  } else {
    error = "unknown watch event type \"" + std::string(type.substr(0, 32)) + "\"";
    return false;
  }
  BadObject bad;
  decode_item(object, spec_of(resource), out.object, bad);
  dom::element metadata;
  if (!object["metadata"].get(metadata)) out.resource_version = string_at(metadata, "resourceVersion");
  if (!out.object) out.bad = std::move(bad);
  return true;
}

bool ApiDecoder::decode_status(std::string_view body, ApiStatus& out) {
  dom::element root;
  if (impl_->parser.parse(body.data(), body.size(), true).get(root)) return false;
  if (string_at(root, "kind") != "Status") return false;
  decode_status_object(root, out);
  return true;
}

}  // namespace svcproxy::watch
