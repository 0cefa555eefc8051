#include "proxy/change_tracker.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace svcproxy::proxy {

namespace {

// The service an EndpointSlice belongs to (none: unlabelled, ignored).
std::optional<model::ObjectRef> slice_owner(const watch::Object& object) {
  const auto& slice = std::get<model::EndpointSlice>(object);
  if (slice.service_name.empty()) return std::nullopt;
  return model::ObjectRef{slice.ref.ns, slice.service_name};
}

}  // namespace

void ChangeBatch::merge(ChangeBatch later) {
  services.merge(later.services);
  node_changed = node_changed || later.node_changed;
  service_changes += later.service_changes;
  endpoint_slice_changes += later.endpoint_slice_changes;
  other_changes += later.other_changes;
  if (!oldest || (later.oldest && *later.oldest < *oldest)) oldest = later.oldest;
  for (auto& t : later.trigger_times) trigger_times.push_back(std::move(t));
}

ChangeTracker::ChangeTracker()
    : wake_fd_(base::adopt_or_throw(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "run: eventfd")) {}

void ChangeTracker::on_change(const watch::Change& change, Clock::time_point now) {
  {
    std::lock_guard lock(mutex_);
    if (!arrived_.oldest) arrived_.oldest = now;
    switch (change.resource) {
      case watch::Resource::Services:
        ++arrived_.service_changes;
        arrived_.services.insert(change.key);
        break;
      case watch::Resource::EndpointSlices: {
        ++arrived_.endpoint_slice_changes;
        if (const auto owner = slice_owner(change.object)) arrived_.services.insert(*owner);
        if (change.previous) {
          if (const auto owner = slice_owner(*change.previous)) arrived_.services.insert(*owner);
        }
        const auto& slice = std::get<model::EndpointSlice>(change.object);
        if (change.type != watch::ChangeType::Deleted && !slice.last_change_trigger_time.empty() &&
            slice.address_type != model::AddressType::FQDN)
          arrived_.trigger_times.push_back(
              {slice.address_type == model::AddressType::IPv4 ? model::IPFamily::V4 : model::IPFamily::V6,
               slice.last_change_trigger_time});
        break;
      }
      default:  // this Node, ServiceCIDRs
        ++arrived_.other_changes;
        arrived_.node_changed = true;
    }
  }
  wake();
}

void ChangeTracker::wake() {
  const uint64_t one = 1;
  [[maybe_unused]] auto n = write(wake_fd_.get(), &one, sizeof one);
}

ChangeBatch ChangeTracker::take() {
  uint64_t count = 0;
  [[maybe_unused]] auto n = read(wake_fd_.get(), &count, sizeof count);
  std::lock_guard lock(mutex_);
  return std::exchange(arrived_, {});
}

}  // namespace svcproxy::proxy
