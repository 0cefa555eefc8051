// Decoding Kubernetes manifests (kubectl -o yaml|json output) into model
// values. The field rules live in decode_rules.h, written once over Field;
// YAML goes through yaml-cpp (YamlNode), JSON through simdjson (JsonNode). A
// field that cannot be used throws FieldError, which the object's decoder
// turns into exactly one Diagnostic while the rest of the stream goes on.
// Nothing here throws to the caller.
#include "watch/manifests.h"

#include <simdjson.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <functional>
#include <sstream>
#include <utility>

#include "watch/decode_rules.h"
#include "watch/json_node.h"
#include "watch/yaml_node.h"

namespace svcproxy::watch {
namespace {

using detail::ApiMatch;
using detail::FieldError;
using detail::JsonNode;
using detail::KindId;
using detail::KindSpec;
using detail::YamlNode;
using detail::join_path;
using detail::quote;
using detail::trim;
using model::ObjectRef;
template <class Node>
using Field = detail::Field<Node>;

// ---- the stream -------------------------------------------------------------

struct Chunk {
  std::string_view text;
  int first_line = 0;  // 0-based line of `text` in the stream
};

bool is_marker(std::string_view line, std::string_view marker) {
  if (line.substr(0, 3) != marker) return false;
  return line.size() == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\r' || line[3] == '\n';
}

// Whether a chunk holds anything but blank lines, comments and bare markers.
bool has_content(std::string_view chunk) {
  while (!chunk.empty()) {
    const size_t newline = chunk.find('\n');
    std::string_view line = chunk.substr(0, newline);
    chunk = newline == std::string_view::npos ? std::string_view() : chunk.substr(newline + 1);
    if (is_marker(line, "---") || is_marker(line, "...")) line.remove_prefix(3);
    line = trim(line);
    if (!line.empty() && line.front() != '#' && line.front() != '%') return true;
  }
  return false;
}

// Splits a stream at YAML document markers ("---" starts a document, "..."
// ends one; both only at column 0, as YAML requires), so that each document is
// parsed on its own and one malformed document cannot take the others down.
std::vector<Chunk> split_documents(std::string_view text) {
  std::vector<Chunk> chunks;
  size_t begin = 0;
  int begin_line = 0;
  int line_number = 0;
  auto close = [&](size_t end, size_t next, int next_line) {
    if (end > begin) chunks.push_back({text.substr(begin, end - begin), begin_line});
    begin = next;
    begin_line = next_line;
  };
  for (size_t pos = 0; pos < text.size(); ++line_number) {
    const size_t newline = text.find('\n', pos);
    const size_t line_end = newline == std::string_view::npos ? text.size() : newline + 1;
    const std::string_view line = text.substr(pos, line_end - pos);
    if (is_marker(line, "---")) {
      close(pos, pos, line_number);
    } else if (is_marker(line, "...")) {
      close(line_end, line_end, line_number + 1);
    }
    pos = line_end;
  }
  close(text.size(), text.size(), line_number);
  return chunks;
}

// "items[3].items[1]" -> "/items/3/items/1" (locations only ever name items).
std::string location_pointer(std::string_view location) {
  std::string out;
  for (char c : location) {
    if (c == '.' || c == '[') {
      out += '/';
    } else if (c != ']') {
      out += c;
    }
  }
  if (!out.empty() && out.front() != '/') out.insert(out.begin(), '/');
  return out;
}

constexpr std::string_view kUtf8Bom = "\xEF\xBB\xBF";

std::string_view without_bom(std::string_view text) {
  if (text.starts_with(kUtf8Bom)) text.remove_prefix(kUtf8Bom.size());
  return text;
}

// A file that could not be read after all; the message is the diagnostic's.
struct ReadError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Where a JSON stream's bytes come from.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Up to `size` bytes into `out`; 0 at the end. Throws ReadError.
  virtual size_t read(char* out, size_t size) = 0;
  // All of it again from the first byte, with SIMDJSON_PADDING bytes of
  // capacity after it. Throws ReadError.
  virtual void read_whole(std::string& out) = 0;
};

class MemorySource final : public ByteSource {
 public:
  explicit MemorySource(std::string_view text) : text_(text) {}
  size_t read(char* out, size_t size) override {
    const size_t n = std::min(size, text_.size() - used_);
    std::memcpy(out, text_.data() + used_, n);
    used_ += n;
    return n;
  }
  void read_whole(std::string& out) override {
    out.reserve(text_.size() + simdjson::SIMDJSON_PADDING);
    out.assign(text_);
  }

 private:
  std::string_view text_;
  size_t used_ = 0;
};

// A regular file (read again from its start by pread for the fallback).
class FileSource final : public ByteSource {
 public:
  explicit FileSource(int fd) : fd_(fd) {}
  size_t read(char* out, size_t size) override {
    for (;;) {
      const ssize_t got = ::read(fd_, out, size);
      if (got >= 0) return static_cast<size_t>(got);
      if (errno != EINTR) throw ReadError(std::string("cannot read: ") + std::strerror(errno));
    }
  }
  void read_whole(std::string& out) override {
    out.clear();
    size_t used = 0;
    for (;;) {
      if (out.size() - used < 65536) out.resize(std::max<size_t>(2 * out.size(), 1 << 20));
      const ssize_t got = ::pread(fd_, out.data() + used, out.size() - used, static_cast<off_t>(used));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) throw ReadError(std::string("cannot read: ") + std::strerror(errno));
      if (got == 0) break;
      used += static_cast<size_t>(got);
    }
    out.resize(used);
    out.reserve(used + simdjson::SIMDJSON_PADDING);
  }

 private:
  int fd_;
};

// The unconsumed bytes of a JSON stream, followed by SIMDJSON_PADDING
// readable bytes: either all of it in memory, or read piece by piece into one
// reused buffer (grown only while one token does not fit), so a 100 MB
// manifest costs neither 100 MB of fresh memory nor the kernel's zeroing of
// it. Lines of consumed text are counted as the buffer drops them, so that
// diagnostics can name lines of the whole stream.
class JsonStream {
 public:
  // All of `text` (followed by SIMDJSON_PADDING readable bytes), no copy.
  explicit JsonStream(std::string_view text) : data_(text.data()), capacity_(text.size()), end_(text.size()) {}

  JsonStream(ByteSource& source, size_t buffer_bytes)
      : source_(&source), capacity_(std::max<size_t>(buffer_bytes, 1)), eof_(false) {
    own_ = std::make_unique<char[]>(capacity_ + simdjson::SIMDJSON_PADDING);
    data_ = own_.get();
  }

  std::string_view text() const { return {data_ + begin_, end_ - begin_}; }
  bool final() const { return eof_; }
  void consume(size_t n) { begin_ += n; }

  // Reads more after text(), keeping it. False at the end of the stream.
  bool more() {
    if (eof_) return false;
    if (begin_ > 0) {  // drop what was consumed, counting its lines first
      if (counted_ < begin_) {
        lines_ += detail::count_newlines({data_ + counted_, begin_ - counted_});
        counted_ = begin_;
      }
      std::memmove(own_.get(), data_ + begin_, end_ - begin_);
      end_ -= begin_;
      counted_ -= begin_;
      begin_ = 0;
    }
    if (end_ == capacity_) {  // one token fills the buffer
      capacity_ *= 2;
      auto grown = std::make_unique<char[]>(capacity_ + simdjson::SIMDJSON_PADDING);
      std::memcpy(grown.get(), own_.get(), end_);
      own_ = std::move(grown);
      data_ = own_.get();
    }
    while (end_ < capacity_) {
      const size_t got = source_->read(own_.get() + end_, capacity_ - end_);
      if (got == 0) {
        eof_ = true;
        break;
      }
      end_ += got;
    }
    return true;
  }

  // At least `n` bytes in text(), unless the stream ends first.
  void want(size_t n) {
    while (end_ - begin_ < n && more()) {
    }
  }

  // The 0-based line in the stream of `p`, a byte of text().
  int line_of(const char* p) {
    const size_t at = static_cast<size_t>(p - data_);
    if (at >= counted_) {
      lines_ += detail::count_newlines({data_ + counted_, at - counted_});
      counted_ = at;
      return static_cast<int>(lines_);
    }
    return static_cast<int>(lines_ - detail::count_newlines({p, counted_ - at}));
  }

  // The whole stream from its first byte, followed by SIMDJSON_PADDING
  // readable bytes (read again unless it is all in memory).
  std::string_view whole() {
    if (source_ == nullptr) return {data_, end_};
    source_->read_whole(whole_);
    return whole_;
  }

 private:
  ByteSource* source_ = nullptr;
  std::unique_ptr<char[]> own_;
  const char* data_ = nullptr;
  size_t capacity_ = 0;
  size_t begin_ = 0;  // first unconsumed byte
  size_t end_ = 0;
  bool eof_ = true;
  size_t counted_ = 0;  // lines_ counts the newlines before data_ + counted_
  size_t lines_ = 0;
  std::string whole_;
};

class Decoder {
 public:
  Decoder(const std::string& origin, DecodeResult& out) : origin_(origin), out_(out) {
    for (const auto& s : out.state.services) seen_.insert({KindId::Service, s.ref});
    for (const auto& s : out.state.endpoint_slices) seen_.insert({KindId::EndpointSlice, s.ref});
    for (const auto& n : out.state.nodes) seen_.insert({KindId::Node, {"", n.name}});
    for (const auto& c : out.state.service_cidrs) seen_.insert({KindId::ServiceCIDR, {"", c.name}});
  }

  void decode_yaml_stream(std::string_view text) {
    if (!check_encoding(text)) return;
    const Locate locate = [this](const FieldError& e, const std::string&) {
      return e.line >= 0 ? first_line_ + e.line + 1 : -1;
    };
    for (const Chunk& chunk : split_documents(text)) {
      if (!has_content(chunk.text)) continue;
      first_line_ = chunk.first_line;
      std::vector<YAML::Node> documents;
      try {
        documents = YAML::LoadAll(std::string(chunk.text));
      } catch (const YAML::Exception& e) {
        ++document_;
        std::string where;
        if (!e.mark.is_null()) {
          // yaml-cpp often notices only at the end of the input, one line past
          // the document; name the document's last line instead.
          const auto lines = static_cast<int>(std::count(chunk.text.begin(), chunk.text.end(), '\n'));
          const int last = chunk.text.ends_with('\n') ? lines - 1 : lines;
          const bool past_end = e.mark.line > last;
          where = " at line " + std::to_string(first_line_ + std::min(e.mark.line, last) + 1);
          if (!past_end) where += ", column " + std::to_string(e.mark.column + 1);
        }
        report("", document_name(), "", "malformed YAML" + where + ": " + e.msg, Diagnostic::Scope::File);
        continue;
      }
      for (const YAML::Node& document : documents) {
        ++document_;
        if (document.IsNull()) continue;
        decode_object(Field<YamlNode>::object(YamlNode(document)), "", "", "", locate);
      }
    }
  }

  // One JSON document (kubectl -o json), read piece by piece from `stream`.
  // Anything that is not exactly one valid JSON document goes through the
  // YAML reader instead (JSON is YAML), which reports syntax errors with
  // their line; that path reads the whole stream again.
  void decode_json_document(JsonStream& stream) {
    const Mark entry = mark();
    try {
      stream.want(3);
      if (!check_encoding(stream.text())) return;
      const ListOutcome outcome = decode_json_list(stream);
      if (outcome == ListOutcome::Decoded) return;
      rollback(entry);
      const std::string_view text = stream.whole();
      if (outcome == ListOutcome::NotAList && decode_json_object(without_bom(text))) return;
      rollback(entry);
      decode_yaml_stream(text);
    } catch (const ReadError& e) {  // as if the file could not be read at all
      rollback(entry);
      report("", "", "", e.what(), Diagnostic::Scope::Unreadable);
    }
  }

 private:
  using Locate = std::function<int(const FieldError&, const std::string& location)>;

  struct Mark {
    size_t services, slices, nodes, cidrs, diagnostics;
    int document;
  };
  Mark mark() const {
    return {out_.state.services.size(), out_.state.endpoint_slices.size(), out_.state.nodes.size(),
            out_.state.service_cidrs.size(), out_.diagnostics.size(), document_};
  }
  // Forgets everything decoded since `mark`.
  void rollback(const Mark& mark) {
    auto& state = out_.state;
    for (size_t i = mark.services; i < state.services.size(); ++i) seen_.erase({KindId::Service, state.services[i].ref});
    for (size_t i = mark.slices; i < state.endpoint_slices.size(); ++i) {
      seen_.erase({KindId::EndpointSlice, state.endpoint_slices[i].ref});
    }
    for (size_t i = mark.nodes; i < state.nodes.size(); ++i) seen_.erase({KindId::Node, {"", state.nodes[i].name}});
    for (size_t i = mark.cidrs; i < state.service_cidrs.size(); ++i) {
      seen_.erase({KindId::ServiceCIDR, {"", state.service_cidrs[i].name}});
    }
    state.services.resize(mark.services);
    state.endpoint_slices.resize(mark.slices);
    state.nodes.resize(mark.nodes);
    state.service_cidrs.resize(mark.cidrs);
    out_.diagnostics.resize(mark.diagnostics);
    document_ = mark.document;
  }

  enum class ListOutcome { Decoded, ItemUnparsable, NotAList };

  // A List: each item parsed on its own, so memory stays at one item's DOM
  // and the text at one buffer, and decoded as soon as the scanner has found
  // it (while it is still in cache). An item that names its own kind and
  // apiVersion decodes the same in any list; from the first one that does
  // not, items are kept (copied) to wait for the envelope's kind (kubectl
  // prints it after the items). Unless Decoded, the caller rolls back.
  ListOutcome decode_json_list(JsonStream& stream) {
    if (stream.text().starts_with(kUtf8Bom)) stream.consume(kUtf8Bom.size());
    ++document_;
    struct Waiting {
      size_t index;
      simdjson::padded_string text;
      int first_line;  // 0-based line of its first byte in the stream
    };
    std::vector<Waiting> waiting;
    simdjson::dom::element root;
    std::string location;
    // `root` is `item` parsed; `first_line` gives the item's 0-based line.
    auto decode_item = [&](size_t i, std::string_view item, const std::string& item_kind,
                           const std::string& item_api_version, const auto& first_line) {
      location = "items[" + std::to_string(i) + "]";
      const Locate locate = [&](const FieldError& e, const std::string& where) {
        const int line = detail::locate_line(item, location_pointer(where.substr(location.size())) + e.pointer);
        return line < 0 ? -1 : first_line() + line + 1;
      };
      decode_object(Field<JsonNode>::object(JsonNode(root)), item_kind, item_api_version, location, locate);
    };
    const std::string no_kind;
    detail::JsonListSplitter splitter;
    for (bool end = false; !end;) {
      size_t consumed = 0;
      std::string_view item;
      const auto step = splitter.next(stream.text(), stream.final(), consumed, item);
      stream.consume(consumed);
      switch (step) {
        case detail::JsonListSplitter::Step::Item:
          if (waiting.empty()) {
            if (dom_.parse(item.data(), item.size(), false).get(root)) return ListOutcome::ItemUnparsable;
            if (names_own_kind(root)) {
              decode_item(splitter.items() - 1, item, no_kind, no_kind, [&] { return stream.line_of(item.data()); });
              break;
            }
          }
          waiting.push_back({splitter.items() - 1, simdjson::padded_string(item), stream.line_of(item.data())});
          break;
        case detail::JsonListSplitter::Step::NeedMore:
          stream.more();
          break;
        case detail::JsonListSplitter::Step::End:
          end = true;
          break;
        case detail::JsonListSplitter::Step::Malformed:
          return ListOutcome::NotAList;
      }
    }
    const detail::JsonListView& list = splitter.list();
    if (!list.has_items || !list.kind.ends_with("List")) return ListOutcome::NotAList;
    const bool typed = list.kind != "List";
    const std::string item_kind = typed ? list.kind.substr(0, list.kind.size() - 4) : "";
    const std::string item_api_version = typed ? list.api_version : "";
    for (const Waiting& item : waiting) {
      if (dom_.parse(item.text).get(root)) return ListOutcome::ItemUnparsable;
      decode_item(item.index, item.text, item_kind, item_api_version, [&] { return item.first_line; });
    }
    return ListOutcome::Decoded;
  }

  // One JSON document that is not a List, whole (`text` followed by
  // SIMDJSON_PADDING readable bytes); false if it is not valid JSON.
  bool decode_json_object(std::string_view text) {
    simdjson::dom::element root;
    if (dom_.parse(text.data(), text.size(), false).get(root)) return false;
    ++document_;
    if (root.is_null()) return true;
    const Locate locate = [&](const FieldError& e, const std::string& where) {
      const int line = detail::locate_line(text, location_pointer(where) + e.pointer);
      return line < 0 ? -1 : line + 1;
    };
    decode_object(Field<JsonNode>::object(JsonNode(root)), "", "", "", locate);
    return true;
  }

  // Whether an item carries a non-empty string kind and apiVersion of its
  // own (then what a typed list would lend it is never used).
  static bool names_own_kind(simdjson::dom::element item) {
    std::string_view kind, api_version;
    return !item["kind"].get(kind) && !kind.empty() && !item["apiVersion"].get(api_version) && !api_version.empty();
  }

  bool check_encoding(std::string_view text) {
    if (text.starts_with("\xFF\xFE") || text.starts_with("\xFE\xFF")) {
      report("", "", "", "the file is UTF-16; re-encode it as UTF-8", Diagnostic::Scope::File);
      return false;
    }
    return true;
  }

  std::string document_name() const { return "document " + std::to_string(document_); }

  void report(std::string kind, std::string object, std::string field, std::string message,
              Diagnostic::Scope scope = Diagnostic::Scope::SingleObject) {
    out_.diagnostics.push_back({.file = origin_,
                                .kind = std::move(kind),
                                .object = std::move(object),
                                .field = std::move(field),
                                .message = std::move(message),
                                .scope = scope});
  }

  // One object, or a list of them. `kind` and `api_version` are inherited
  // from a typed list (ServiceList items may omit both); `location` is the
  // object's path in the document ("items[3]"), used only while the object
  // has no name to be reported by.
  template <class Node>
  void decode_object(const Field<Node>& object, std::string kind, std::string api_version,
                     const std::string& location, const Locate& locate) {
    std::string name;  // "namespace/name" once known
    try {
      object.expect_map();
      if (std::string own(object.get("kind").text()); !own.empty()) kind = std::move(own);
      if (std::string own(object.get("apiVersion").text()); !own.empty()) api_version = std::move(own);
      if (kind.empty()) {
        object.get("kind").fail(location.empty()
                                    ? "missing; not a Kubernetes object"
                                    : "missing; items of a plain List must carry their kind "
                                      "(typed lists such as NodeList may omit it)");
      }

      if (kind.ends_with("List") && object.get("items").exists()) {
        // Items of a typed list may omit kind and apiVersion; those of a
        // plain List must carry their own.
        const bool typed = kind != "List";
        const std::string item_kind = typed ? kind.substr(0, kind.size() - 4) : "";
        const std::string item_api_version = typed ? api_version : "";
        size_t index = 0;
        for (const Field<Node>& item : object.get("items").items()) {
          const std::string item_location = join_path(location, "items[" + std::to_string(index++) + "]");
          decode_object(item.as_object(), item_kind, item_api_version, item_location, locate);
        }
        return;
      }

      const KindSpec* spec = detail::find_kind(kind);
      if (spec == nullptr) return;  // not a kind svcproxy uses
      const ApiMatch match = detail::match_api_version(*spec, api_version);
      if (match == ApiMatch::OtherGroup) return;  // a Knative Service, say

      ObjectRef ref = detail::object_ref(object, spec->namespaced);
      name = ref.str();
      if (match == ApiMatch::OtherVersion) {
        const std::string want = spec->group.empty() ? "v1" : std::string(spec->group) + "/v1";
        object.get("apiVersion").fail(quote(api_version) + " is not supported (want " + want + ")");
      }
      if (seen_.contains({spec->id, ref})) {
        report(kind, name, "", "duplicate of an object decoded earlier; the first one is kept");
        return;
      }
      detail::decode_kind(object, *spec, ref, out_.state);
      seen_.insert({spec->id, std::move(ref)});
    } catch (const FieldError& e) {
      std::string message = e.message;
      const int line = locate(e, location);
      if (line > 0) message += " (line " + std::to_string(line) + ")";
      if (name.empty()) {
        report(kind, document_name(), join_path(location, e.field), std::move(message));
      } else {
        report(kind, name, e.field, std::move(message));
      }
    } catch (const std::exception& e) {  // yaml-cpp, should a node surprise us
      report(kind, name.empty() ? document_name() : name, name.empty() ? location : "", e.what());
    }
  }

  const std::string& origin_;
  DecodeResult& out_;
  int document_ = 0;    // 1-based number of the current document in the stream
  int first_line_ = 0;  // 0-based line where the current document starts
  std::set<std::pair<KindId, ObjectRef>> seen_;
  simdjson::dom::parser dom_;
};

bool is_json_name(std::string_view origin) { return origin.ends_with(".json"); }

// `text` must be followed by SIMDJSON_PADDING readable bytes when it is JSON.
void decode_into(std::string_view text, const std::string& origin, DecodeResult& out, bool json) {
  try {
    Decoder decoder(origin, out);
    if (json) {
      JsonStream stream(text);
      decoder.decode_json_document(stream);
    } else {
      decoder.decode_yaml_stream(text);
    }
  } catch (const std::exception& e) {
    out.diagnostics.push_back(
        {.file = origin, .kind = "", .object = "", .field = "", .message = e.what(), .scope = Diagnostic::Scope::File});
  }
}

// JSON read from `source` through a buffer of `buffer_bytes`.
void decode_json_from(ByteSource& source, size_t buffer_bytes, const std::string& origin, DecodeResult& out) {
  try {
    Decoder decoder(origin, out);
    JsonStream stream(source, buffer_bytes);
    decoder.decode_json_document(stream);
  } catch (const std::exception& e) {
    out.diagnostics.push_back(
        {.file = origin, .kind = "", .object = "", .field = "", .message = e.what(), .scope = Diagnostic::Scope::File});
  }
}

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// A file's bytes with simdjson's padding readable after them.
class FileText {
 public:
  FileText() = default;
  FileText(const FileText&) = delete;
  FileText& operator=(const FileText&) = delete;
  ~FileText() {
    if (map_ != nullptr) ::munmap(map_, map_size_);
  }

  // From `fd` (open, at its start).
  bool load(int fd, std::string& error) { return map(fd) || read_all(fd, error); }

  std::string_view view() const {
    return map_ != nullptr ? std::string_view(static_cast<const char*>(map_), size_) : std::string_view(buffer_);
  }

 private:
  // A regular file of 1 MiB or more is read into anonymous memory populated
  // in one go (page faults one by one dominate reading 50 MB otherwise). Not
  // a file mapping: a file truncated while we read it must not SIGBUS us.
  bool map(int fd) {
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < (1 << 20)) return false;
    const size_t size = static_cast<size_t>(st.st_size);
    const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    const size_t total = (size + simdjson::SIMDJSON_PADDING + page - 1) / page * page;
    void* area = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) return false;
    // Huge pages where the kernel has them: the file is read once by the
    // copy and then scanned twice; with 4 KiB pages this guest spends most
    // of that in TLB misses. Then populated in one go.
    ::madvise(area, total, MADV_HUGEPAGE);
#ifdef MADV_POPULATE_WRITE
    ::madvise(area, total, MADV_POPULATE_WRITE);
#endif
    size_t used = 0;
    while (used < size) {
      const ssize_t got = ::pread(fd, static_cast<char*>(area) + used, size - used, static_cast<off_t>(used));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) break;  // shrank meanwhile: what was there
      used += static_cast<size_t>(got);
    }
    char probe;
    if (used == size && ::pread(fd, &probe, 1, static_cast<off_t>(size)) > 0) {  // grew meanwhile
      ::munmap(area, total);
      return false;
    }
    map_ = area;
    map_size_ = total;
    size_ = used;
    return true;
  }

  bool read_all(int fd, std::string& error) {
    char chunk[65536];
    for (;;) {
      const ssize_t got = ::read(fd, chunk, sizeof chunk);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) {
        error = std::string("cannot read: ") + std::strerror(errno);
        return false;
      }
      if (got == 0) break;
      buffer_.append(chunk, static_cast<size_t>(got));
    }
    buffer_.reserve(buffer_.size() + simdjson::SIMDJSON_PADDING);  // simdjson reads past the end
    return true;
  }

  void* map_ = nullptr;
  size_t map_size_ = 0;
  size_t size_ = 0;
  std::string buffer_;
};

bool is_manifest_name(const std::filesystem::path& path) {
  const std::string extension = path.extension().string();
  return extension == ".yaml" || extension == ".yml" || extension == ".json";
}

// One file: JSON in a regular file streams through a reused buffer; YAML,
// and JSON from a pipe or device, are read whole first.
void load_file(const std::filesystem::path& file, bool listed, const ReadOptions& options, DecodeResult& out) {
  const std::string origin = file.string();
  const FileDescriptor fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    // Deleted since the directory was listed: its deletion's event follows.
    if (listed && errno == ENOENT) return;
    out.diagnostics.push_back({.file = origin,
                               .kind = "",
                               .object = "",
                               .field = "",
                               .message = std::string("cannot open: ") + std::strerror(errno),
                               .scope = Diagnostic::Scope::Unreadable});
    return;
  }
  const bool json = is_json_name(origin);
  struct stat st {};
  if (json && ::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode)) {
    ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    FileSource source(fd.get());
    decode_json_from(source, options.json_buffer_bytes, origin, out);
    return;
  }
  FileText text;
  std::string error;
  if (text.load(fd.get(), error)) {
    decode_into(text.view(), origin, out, json);
  } else {
    out.diagnostics.push_back({.file = origin,
                               .kind = "",
                               .object = "",
                               .field = "",
                               .message = std::move(error),
                               .scope = Diagnostic::Scope::Unreadable});
  }
}

}  // namespace

std::string Diagnostic::str() const {
  std::string out = file + ": skipped";
  if (!kind.empty()) out += " " + kind;
  if (!object.empty()) out += " " + object;
  out += ": ";
  if (!field.empty()) out += field + ": ";
  out += message;
  std::replace_if(out.begin(), out.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  return out;
}

void decode_manifests(std::string_view text, const std::string& origin, DecodeResult& out,
                      ManifestFormat format, const ReadOptions& options) {
  const bool json = format == ManifestFormat::Json || (format == ManifestFormat::ByName && is_json_name(origin));
  if (json) {
    MemorySource source(text);
    decode_json_from(source, options.json_buffer_bytes, origin, out);
  } else {
    decode_into(text, origin, out, false);
  }
  out.state.sort();
}

void decode_manifests_json_padded(std::string_view text, const std::string& origin, DecodeResult& out) {
  static_assert(simdjson::SIMDJSON_PADDING <= 64);
  decode_into(text, origin, out, true);
  out.state.sort();
}

std::optional<std::vector<std::string>> manifest_files(const std::string& path, Diagnostic& error) {
  namespace fs = std::filesystem;
  auto fail = [&](std::string message) {
    error = {.file = path,
             .kind = "",
             .object = "",
             .field = "",
             .message = std::move(message),
             .scope = Diagnostic::Scope::Unreadable};
    return std::nullopt;
  };
  std::error_code ec;
  const fs::path root(path);
  // A path that is not there is an error, never an empty cluster: a typo or
  // an unmounted volume must not remove every service of the node.
  const fs::file_status status = fs::status(root, ec);
  if (ec || !fs::exists(status)) return fail("cannot read: " + (ec ? ec.message() : std::strerror(ENOENT)));
  if (!fs::is_directory(status)) return std::vector<std::string>{path};
  std::vector<fs::path> found;
  fs::directory_iterator it(root, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    std::error_code file_ec;
    if (is_manifest_name(it->path()) && it->is_regular_file(file_ec)) found.push_back(it->path());
  }
  if (ec) return fail("cannot list directory: " + ec.message());
  std::sort(found.begin(), found.end(), [](const fs::path& a, const fs::path& b) {
    return a.filename().native() < b.filename().native();
  });
  std::vector<std::string> files;
  files.reserve(found.size());
  for (const fs::path& file : found) files.push_back(file.string());
  return files;
}

void load_manifest_file(const std::string& file, bool listed, DecodeResult& out, const ReadOptions& options) {
  load_file(file, listed, options, out);
}

DecodeResult load_manifests(const std::string& path, const ReadOptions& options) {
  DecodeResult result;
  Diagnostic error;
  const auto files = manifest_files(path, error);
  if (!files) {
    result.diagnostics.push_back(std::move(error));
    return result;
  }
  const bool listed = files->size() != 1 || (*files)[0] != path;
  for (const std::string& file : *files) load_file(file, listed, options, result);
  result.state.sort();
  return result;
}

}  // namespace svcproxy::watch
