// What a cache cell holds and how its tooltip reads: the stored value, and for f16/int8
// caches the f32 value it replaced and the rounding error (issue 11, "hover a cell").
#include <cstdio>
#include <string>

#include "ui/panels/cache_policy_view.h"

namespace kvui {

CellValue cache_cell(const SessionView& v, int row, int col, bool k) {
    CellValue c;
    const kv::RowMat& st = k ? v.cache_k : v.cache_v;
    const kv::RowMat& raw = k ? v.cache_k_f32 : v.cache_v_f32;
    if (row < 0 || row >= st.rows() || col < 0 || col >= st.cols()) return c;
    c.held = row < static_cast<int>(v.held.size()) && v.held[static_cast<size_t>(row)];
    if (!c.held) return c;
    c.stored = st(row, col);
    c.rounded = v.policy.dtype != kv::KvDtype::f32 && row < raw.rows() && col < raw.cols();
    c.f32 = c.rounded ? raw(row, col) : c.stored;
    return c;
}

std::string cell_hover_text(const SessionView& v, const CacheRow& row, int col, bool k) {
    const CellValue c = cache_cell(v, row.row, col, k);
    const char* kv_name = k ? "K" : "V";
    char b[320];
    if (!c.held) {
        std::snprintf(b, sizeof b, "%s row %d: evicted by the cache's policy (%s)\nno later query can read it", kv_name,
                      row.row, policy_caption(v.policy).c_str());
        return b;
    }
    const std::string state = std::string(row.sink ? "sink (always read), " : "") + row_state_name(row.state);
    if (!c.rounded) {
        std::snprintf(b, sizeof b, "%s row %d, dim %d = %.4f\n%s at this step", kv_name, row.row, col, c.stored,
                      state.c_str());
        return b;
    }
    std::snprintf(b, sizeof b,
                  "%s row %d, dim %d: stored %.6f (%s)\nthe f32 value it replaced: %.6f\nerror: %+.2e\n%s at this step",
                  kv_name, row.row, col, c.stored, kv::dtype_name(v.policy.dtype), c.f32, c.error(), state.c_str());
    return b;
}

}  // namespace kvui
