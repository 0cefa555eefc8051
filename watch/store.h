// The informer's store: the current objects of each watched resource, as
// model values, and the change stream that got them there. Every mutation
// that changes something emits exactly one Change (in order, on the thread
// that applied it), so a consumer replaying the changes from empty holds
// exactly what the store holds. Thread-safe: reflectors write, anyone reads.
//
// EndpointSlices are also indexed by the service they belong to (namespace
// and label kubernetes.io/service-name), so that a consumer recomputing one
// service finds its slices in O(slices of that service), not by a scan.
#pragma once

#include <array>
#include <functional>
#include <initializer_list>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <vector>

#include "model/objects.h"
#include "watch/api_objects.h"

namespace svcproxy::watch {

enum class ChangeType { Added, Updated, Deleted };

struct Change {
  ChangeType type = ChangeType::Added;
  Resource resource = Resource::Services;
  model::ObjectRef key;
  Object object;  // the new state; for Deleted, the last state
  // For Updated, the state it replaced (an EndpointSlice's service label may
  // have changed: both services are affected).
  std::optional<Object> previous;
};

using ChangeHandler = std::function<void(const Change&)>;

class Store {
 public:
  explicit Store(ChangeHandler on_change = {}, std::function<void()> on_synced = {})
      : on_change_(std::move(on_change)), on_synced_(std::move(on_synced)) {}

  // Adds or replaces; emits Added or Updated unless nothing changed.
  void upsert(Resource resource, Object object);
  // Removes by key; emits Deleted if it was there.
  void erase(Resource resource, const model::ObjectRef& key);
  // Makes `objects` the whole content of `resource` (a relist), emitting the
  // difference: deletes, then adds and updates. Marks the resource synced.
  void replace(Resource resource, std::vector<Object> objects);
  // The server made progress that changed nothing here (a watch bookmark):
  // tells the consumer as replace() does, so that counters it reads (the
  // reflectors' stats) are looked at again.
  void progressed() const {
    if (on_synced_) on_synced_();
  }

  bool has_synced(Resource resource) const;
  // Every resource in `resources` has completed its first list.
  bool has_synced(const std::vector<Resource>& resources) const;
  size_t size(Resource resource) const;
  std::optional<Object> get(Resource resource, const model::ObjectRef& key) const;

  // Everything, sorted, as the compiler takes it.
  model::ClusterState snapshot() const;
  // The same, of the given resources only (e.g. what the node's
  // configuration depends on: Nodes and ServiceCIDRs).
  model::ClusterState snapshot(std::initializer_list<Resource> resources) const;

  // One service and the EndpointSlices that belong to it, sorted by
  // reference, read at one moment: O(slices of that service).
  struct ServiceObjects {
    std::optional<model::Service> service;  // none: there is no such Service
    std::vector<model::EndpointSlice> slices;
  };
  ServiceObjects service_objects(const model::ObjectRef& service) const;

 private:
  using Objects = std::map<model::ObjectRef, Object>;
  static size_t index(Resource resource) { return static_cast<size_t>(resource); }
  void emit(std::vector<Change>& changes);
  // Keeps slices_by_service_ current for one EndpointSlice change (either
  // pointer may be null: added, deleted).
  void reindex(const model::ObjectRef& key, const Object* before, const Object* after);

  mutable std::mutex mutex_;
  std::array<Objects, 4> objects_;
  // Service (namespace, name) -> references of its EndpointSlices.
  std::map<model::ObjectRef, std::set<model::ObjectRef>> slices_by_service_;
  std::array<bool, 4> synced_{};
  ChangeHandler on_change_;
  std::function<void()> on_synced_;  // after every replace() and progressed()
};

// Applies a change to a plain map, for consumers keeping their own copy (and
// for tests replaying the stream).
void apply_change(std::map<std::pair<Resource, model::ObjectRef>, Object>& state, const Change& change);

}  // namespace svcproxy::watch
