// AppState helpers and the row-state rule shared by the cache and attention panels.
#include "ui/state/app_state.h"

#include <algorithm>

#include "core/model/model_io.h"

namespace kvui {

const char* row_state_name(RowState s) {
    switch (s) {
    case RowState::read: return "read from cache";
    case RowState::computed: return "computed now";
    case RowState::recomputed: return "recomputed (cache off)";
    case RowState::evicted: return "evicted: no later query can read it";
    case RowState::empty: break;
    }
    return "empty";
}

// Rows before start_pos were read; rows an earlier step had computed but this step
// computed again are recomputed; the rest are new.
RowState row_state(const kv::StepTrace& t, int row) {
    const int n = static_cast<int>(t.input_ids.size());
    if (row < 0 || row >= t.start_pos + n) return RowState::empty;
    if (row < t.start_pos) return RowState::read;
    if (row < t.n_known) return RowState::recomputed;
    return RowState::computed;
}

int AppState::n_layer() const { return model ? model->config.n_layer : 1; }
int AppState::n_head() const { return model ? model->config.n_head : 1; }
int AppState::kv_head_of(int head) const {
    if (!model) return 0;
    return model->config.kv_head_of(head);
}

std::string AppState::token_text(int id) const {
    if (model && model->tokenizer) {
        std::string s = model->tokenizer->token_text(id);
        if (!s.empty()) return s;
    }
    std::string out = "#";  // appended, not "#" + ...: GCC 12 warns falsely on that (-Wrestrict, PR 105329)
    out += std::to_string(id);
    return out;
}

std::string window_title(const AppState& app) {
    const kv::StepTrace* t = app.main.last();
    std::string s = t ? "kvscope: Step " + std::to_string(t->step) + ", " + kv::phase_name(t->phase) : kTitle;
    if (t) {
        s += app.main.cache_on ? ", cache on, next '" : ", cache off, next '";
        s += app.token_text(t->next_id);
        s += "'";
    }
    if (app.vs.lesson.on) s += " (lesson chapter " + std::to_string(app.vs.lesson.chapter) + ")";
    return s;
}

}  // namespace kvui
