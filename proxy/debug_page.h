// The /debug page (HTML) and `svcproxy status` (text) of a DebugState.
//
// The page is one document with no external asset: its style and script
// are inline, allowed by a per-response nonce in its Content-Security-Policy
// (debug_page_csp), which refuses everything else (images, frames, other
// origins; fetch only to the page's own origin). Without JavaScript it is
// complete: the tables are rendered here and the filter box is a GET form
// (?filter=). With JavaScript the page fetches /debug/state every few
// seconds and re-renders the same tables from it (textContent only: a
// hostile name is never parsed as HTML).
#pragma once

#include <string>
#include <string_view>

#include "proxy/debug_state.h"

namespace svcproxy::proxy {

// `state.services` should already be filtered by `filter` (shown in the box).
std::string render_debug_page(const DebugState& state, std::string_view filter, std::string_view nonce);
// The header value that goes with a page rendered with `nonce`.
std::string debug_page_csp(std::string_view nonce);
// A fresh nonce (base64 of 16 random bytes).
std::string make_nonce();

// The terminal's view: node, watch, services -> ports -> endpoints, syncs.
std::string render_status_text(const DebugState& state);

// `text` with & < > " ' as character references.
std::string html_escape(std::string_view text);
// A percent-decoded query parameter ("filter" of "a=1&filter=x%20y").
std::string query_parameter(std::string_view query, std::string_view name);

}  // namespace svcproxy::proxy
