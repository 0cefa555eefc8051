#include "watch/store.h"

#include <utility>

namespace svcproxy::watch {

namespace {

// The service an EndpointSlice belongs to; none for other objects and for
// slices without the service-name label.
std::optional<model::ObjectRef> owner(const Object* object) {
  const auto* slice = object ? std::get_if<model::EndpointSlice>(object) : nullptr;
  if (!slice || slice->service_name.empty()) return std::nullopt;
  return model::ObjectRef{slice->ref.ns, slice->service_name};
}

}  // namespace

void Store::reindex(const model::ObjectRef& key, const Object* before, const Object* after) {
  const auto old_owner = owner(before);
  const auto new_owner = owner(after);
  if (old_owner == new_owner) return;
  if (old_owner) {
    const auto it = slices_by_service_.find(*old_owner);
    if (it != slices_by_service_.end()) {
      it->second.erase(key);
      if (it->second.empty()) slices_by_service_.erase(it);
    }
  }
  if (new_owner) slices_by_service_[*new_owner].insert(key);
}

void Store::emit(std::vector<Change>& changes) {
  if (!on_change_) return;
  for (const Change& change : changes) on_change_(change);
}

void Store::upsert(Resource resource, Object object) {
  std::vector<Change> changes;
  {
    std::lock_guard lock(mutex_);
    model::ObjectRef key = object_key(object);
    auto [it, inserted] = objects_[index(resource)].try_emplace(key, object);
    if (inserted) {
      reindex(key, nullptr, &it->second);
      changes.push_back({ChangeType::Added, resource, std::move(key), std::move(object), std::nullopt});
    } else if (!(it->second == object)) {
      Object before = std::exchange(it->second, object);
      reindex(key, &before, &it->second);
      changes.push_back({ChangeType::Updated, resource, std::move(key), std::move(object), std::move(before)});
    }
  }
  emit(changes);
}

void Store::erase(Resource resource, const model::ObjectRef& key) {
  std::vector<Change> changes;
  {
    std::lock_guard lock(mutex_);
    auto& objects = objects_[index(resource)];
    const auto it = objects.find(key);
    if (it == objects.end()) return;
    reindex(key, &it->second, nullptr);
    changes.push_back({ChangeType::Deleted, resource, key, std::move(it->second), std::nullopt});
    objects.erase(it);
  }
  emit(changes);
}

void Store::replace(Resource resource, std::vector<Object> objects) {
  std::vector<Change> changes;
  {
    std::lock_guard lock(mutex_);
    Objects fresh;
    for (Object& object : objects) {
      model::ObjectRef key = object_key(object);
      fresh.insert_or_assign(std::move(key), std::move(object));
    }
    Objects& current = objects_[index(resource)];
    for (const auto& [key, object] : current) {
      if (fresh.contains(key)) continue;
      reindex(key, &object, nullptr);
      changes.push_back({ChangeType::Deleted, resource, key, object, std::nullopt});
    }
    for (const auto& [key, object] : fresh) {
      const auto it = current.find(key);
      if (it == current.end()) {
        reindex(key, nullptr, &object);
        changes.push_back({ChangeType::Added, resource, key, object, std::nullopt});
      } else if (!(it->second == object)) {
        reindex(key, &it->second, &object);
        changes.push_back({ChangeType::Updated, resource, key, object, it->second});
      }
    }
    current = std::move(fresh);
    synced_[index(resource)] = true;
  }
  emit(changes);
  if (on_synced_) on_synced_();
}

bool Store::has_synced(Resource resource) const {
  std::lock_guard lock(mutex_);
  return synced_[index(resource)];
}

bool Store::has_synced(const std::vector<Resource>& resources) const {
  std::lock_guard lock(mutex_);
  for (Resource r : resources) {
    if (!synced_[index(r)]) return false;
  }
  return true;
}

size_t Store::size(Resource resource) const {
  std::lock_guard lock(mutex_);
  return objects_[index(resource)].size();
}

std::optional<Object> Store::get(Resource resource, const model::ObjectRef& key) const {
  std::lock_guard lock(mutex_);
  const auto& objects = objects_[index(resource)];
  const auto it = objects.find(key);
  if (it == objects.end()) return std::nullopt;
  return it->second;
}

model::ClusterState Store::snapshot() const {
  return snapshot({Resource::Services, Resource::EndpointSlices, Resource::Nodes, Resource::ServiceCIDRs});
}

model::ClusterState Store::snapshot(std::initializer_list<Resource> resources) const {
  model::ClusterState state;
  {
    std::lock_guard lock(mutex_);
    for (const Resource resource : resources) {
      for (const auto& [key, object] : objects_[index(resource)]) {
        std::visit(
            [&](const auto& o) {
              using T = std::decay_t<decltype(o)>;
              if constexpr (std::is_same_v<T, model::Service>) state.services.push_back(o);
              if constexpr (std::is_same_v<T, model::EndpointSlice>) state.endpoint_slices.push_back(o);
              if constexpr (std::is_same_v<T, model::Node>) state.nodes.push_back(o);
              if constexpr (std::is_same_v<T, model::ServiceCIDR>) state.service_cidrs.push_back(o);
            },
            object);
      }
    }
  }
  state.sort();
  return state;
}

Store::ServiceObjects Store::service_objects(const model::ObjectRef& service) const {
  ServiceObjects out;
  std::lock_guard lock(mutex_);
  const auto& services = objects_[index(Resource::Services)];
  if (const auto it = services.find(service); it != services.end()) out.service = std::get<model::Service>(it->second);
  const auto slices = slices_by_service_.find(service);
  if (slices == slices_by_service_.end()) return out;
  const auto& objects = objects_[index(Resource::EndpointSlices)];
  out.slices.reserve(slices->second.size());
  for (const auto& key : slices->second) out.slices.push_back(std::get<model::EndpointSlice>(objects.at(key)));
  return out;
}

void apply_change(std::map<std::pair<Resource, model::ObjectRef>, Object>& state, const Change& change) {
  const auto key = std::make_pair(change.resource, change.key);
  if (change.type == ChangeType::Deleted) {
    state.erase(key);
  } else {
    state.insert_or_assign(key, change.object);
  }
}

}  // namespace svcproxy::watch
