#include "watch/store.h"

namespace svcproxy::watch {

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
      changes.push_back({ChangeType::Added, resource, std::move(key), std::move(object)});
    } else if (!(it->second == object)) {
      it->second = object;
      changes.push_back({ChangeType::Updated, resource, std::move(key), std::move(object)});
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
    changes.push_back({ChangeType::Deleted, resource, key, std::move(it->second)});
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
      if (!fresh.contains(key)) changes.push_back({ChangeType::Deleted, resource, key, object});
    }
    for (const auto& [key, object] : fresh) {
      const auto it = current.find(key);
      if (it == current.end()) {
        changes.push_back({ChangeType::Added, resource, key, object});
      } else if (!(it->second == object)) {
        changes.push_back({ChangeType::Updated, resource, key, object});
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
  model::ClusterState state;
  {
    std::lock_guard lock(mutex_);
    for (const auto& objects : objects_) {
      for (const auto& [key, object] : objects) {
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

void apply_change(std::map<std::pair<Resource, model::ObjectRef>, Object>& state, const Change& change) {
  const auto key = std::make_pair(change.resource, change.key);
  if (change.type == ChangeType::Deleted) {
    state.erase(key);
  } else {
    state.insert_or_assign(key, change.object);
  }
}

}  // namespace svcproxy::watch
