// The window's speculative mode (issue 12): what it draws of kv::SpecDecoder's rounds,
// and the pure view logic the tests check without a window. One press of Step runs
// one round: the draft proposes k tokens through its own cache, the target checks
// them all in one forward pass, and the rows of rejected positions are rolled back
// from both caches. The window shows a round in two phases: "written" (the drafts
// dashed, the target's k+1 new rows written) and "rolled back" (accepted drafts green,
// rejected ones red and struck, the rejected rows struck and faded in both caches).
// Notation: T tokens before the round, k drafts, a accepted, p prompt tokens.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/model/config.h"
#include "core/session/speculative.h"
#include "core/tensor.h"

namespace kvui {

struct AppState;

// A snapshot of the speculative decoder, published like SessionView.
struct SpecView {
    bool on = false;
    std::string draft_name;                               // folder name or random:...
    std::string draft_spec;                               // what the draft was loaded from (a path)
    kv::ModelConfig draft_config;
    int k = 4;
    std::vector<int> prompt_ids, tokens;                  // tokens: prompt + generated
    std::vector<std::shared_ptr<const kv::SpecRound>> rounds;
    kv::SpecCounters totals;
    double target_ms = 0, draft_ms = 0;                   // over all rounds
    bool can_round = false;
    std::string why_not;                                  // when !can_round
    int layer = 0, kv_head = 0;                           // what the target's rows hold
    int draft_layer = 0, draft_kv_head = 0;               // the draft's (clamped to its shape)
    kv::RowMat target_k, target_v;                        // (target rows held, hd)
    kv::RowMat draft_k, draft_v;                          // (draft rows held, draft hd)
    // The latest round's target rows rolled back, from its trace: (rows, hd), row i at
    // position gone_first + i; 0 rows when the trace did not record that head.
    int gone_first = 0;
    kv::RowMat gone_k, gone_v;

    const kv::SpecRound* last() const { return rounds.empty() ? nullptr : rounds.back().get(); }
    int n_rounds() const { return static_cast<int>(rounds.size()); }
};

// What the teacher chose for the mode; the Controller gets it through commands.
struct SpecChoice {
    std::string draft_text;  // the draft field (empty: the default draft for the model)
    int k = 4;               // drafts per round, 1..16
    int hold = 0;            // 0: the round animates written -> rolled back; 1, 2: hold that phase
};

// ---- pure view logic ---------------------------------------------------------------

enum class SpecPhase { written, rolled_back };
// The phase the window shows now: a held one, else "written" for the first
// 1.2 s after a round and "rolled back" after (always when not animating).
SpecPhase spec_phase(const AppState& app);

// One chip of the tokens panel.
enum class SpecTokState { prompt, generated, drafted, accepted, rejected, target_pick };
const char* spec_tok_state_name(SpecTokState s);
struct SpecChip {
    int pos = 0;  // the position the token has (a rejected draft: the one it would have had)
    int id = 0;
    SpecTokState state = SpecTokState::prompt;
    bool bonus = false;  // target_pick after all k drafts were accepted
};
// Tokens before the latest round, then its drafts (dashed while written; accepted or
// rejected after), then the target's own token (only once the round is rolled back).
std::vector<SpecChip> spec_chips(const SpecView& v, SpecPhase ph);

// Cache rows (positions) as half-open ranges [first, end).
struct RowRange {
    int first = 0, end = 0;
    int size() const { return end > first ? end - first : 0; }
    bool empty() const { return size() == 0; }
    bool contains(int r) const { return r >= first && r < end; }
    bool operator==(const RowRange&) const = default;
};
// One model's cache over a round: rows it held before, rows written and kept, rows
// written and rolled back.
struct RoundRows {
    RowRange before, kept, rolled_back;
};
RoundRows target_round_rows(const kv::SpecRound& r);
RoundRows draft_round_rows(const kv::SpecRound& r);
// "row 9" / "rows 9-10" ([first, end)), "no rows" when empty.
std::string rows_text(const RowRange& r);

// The latest round in words with its own numbers (phase: what the window shows).
std::string narrate_spec(const AppState& app, SpecPhase ph);

// The work chart's speculative series: after each round, the tokens generated so far
// and the target passes they took; plain decoding takes one pass per token.
struct SpecChart {
    std::vector<double> tokens, passes;  // (rounds) cumulative
    double passes_per_token = 0;         // speculative, over all rounds
    double acceptance = 0;               // accepted / proposed
    double cost_ratio = 0;               // c: draft ms per pass / target ms per pass (0: unmeasured)
    double expected_speedup = 0;         // (1 - a^(k+1)) / ((1 - a)(k c + 1)), 0 without c
};
SpecChart spec_chart(const SpecView& v);
// Leviathan et al.'s expected speed-up for acceptance rate a, k drafts, cost ratio c.
double expected_speedup(double a, int k, double c);

// The default draft for a target: the folder NAME-draft next to the target's folder
// NAME (tiny-llama-draft for tiny-llama), else tiny-draft next to it (the bundled
// pairs), else tiny-draft next to the bundled model, else a random model of the
// same shape with another seed for random targets; "" when there is none.
std::string default_draft_spec(const std::string& target_spec, const std::string& target_path);

// ---- panels (ui/panels/spec_panels.cpp) -----------------------------------------------------
void draw_spec_controls(AppState& app);     // the toggle, draft field, k and phase hold
void draw_spec_tokens_panel(AppState& app);
void draw_spec_cache_panel(AppState& app);  // the target's cache and the draft's beside it
void draw_spec_narration_panel(AppState& app);
std::string spec_why_not(const AppState& app);  // the line under it: why no round can run (empty: one can)
void draw_spec_work(AppState& app);         // target passes per token, plain vs speculative

}  // namespace kvui
