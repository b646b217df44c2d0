// The window's speculative mode (ui/state/spec_view.h, ui/runtime/spec_runner.h): a round's record
// becomes the right token chips in both phases, the rolled-back row ranges follow the
// round's arithmetic (target k - a rows, draft max(0, k - 1 - a)), the narration
// carries the round's own numbers, Back restores both caches to a fresh run's rows
// (and to a plain Session's, an independent path), and every panel draws in both
// phases with ImGui's stacks balanced.
#include <doctest/doctest.h>
#include <imgui.h>
#include <imgui_internal.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "core/engine/engine.h"
#include "core/model/model_io.h"
#include "core/session/session.h"
#include "core/session/speculative.h"
#include "ui/state/app_state.h"
#include "ui/runtime/controller.h"
#include "ui/panels/panels.h"
#include "ui/look/theme.h"
#include "tests/ui_headless.h"

using namespace kvui;
using kvtest::Headless;

namespace {

const std::string kModels = KVSCOPE_SOURCE_DIR "/assets/models";

void run(Controller& ctl, AppState& app, Command c) {
    kvtest::run_command(ctl, app, std::move(c));
}

Command spec_cmd(bool on, int k, const std::string& draft = "") {
    Command c{CommandKind::set_speculative};
    c.flag = on;
    c.n = k;
    c.text = draft;
    return c;
}

// The bundled tiny-gpt with its tiny-draft (the default draft), speculative, k drafts.
void open_bundled_spec(Controller& ctl, AppState& app, int k) {
    REQUIRE(std::filesystem::is_regular_file(kModels + "/tiny-gpt/config.json"));
    REQUIRE(std::filesystem::is_regular_file(kModels + "/tiny-draft/config.json"));
    ctl.open(app, kModels + "/tiny-gpt", "cpu", "Python is a programming");
    REQUIRE(app.model != nullptr);
    REQUIRE(app.error.empty());
    app.vs.animate = false;
    run(ctl, app, spec_cmd(true, k));
    REQUIRE(app.error.empty());
    REQUIRE(app.spec.on);
    REQUIRE(app.spec.draft_name == "tiny-draft");
    REQUIRE(std::filesystem::equivalent(app.spec.draft_spec, kModels + "/tiny-draft"));
}

// A synthetic round: T = 5 tokens before (prompt 3), k = 4 drafts 10..13, a accepted.
SpecView synthetic_view(int a) {
    SpecView v;
    v.on = true;
    v.k = 4;
    v.prompt_ids = {1, 2, 3};
    auto r = std::make_shared<kv::SpecRound>();
    r->n_tokens_before = 5;
    r->proposed = {10, 11, 12, 13};
    r->accepted = a;
    r->next_id = 20;
    r->bonus = a == 4;
    v.tokens = {1, 2, 3, 4, 5};
    for (int i = 0; i < a; ++i) v.tokens.push_back(10 + i);
    v.tokens.push_back(20);
    v.rounds.push_back(r);
    return v;
}

}  // namespace

TEST_CASE("speculative chips: drafts dashed while written, then accepted, rejected and the target's token") {
    for (int a : {0, 2, 4}) {
        CAPTURE(a);
        const SpecView v = synthetic_view(a);
        const std::vector<SpecChip> w = spec_chips(v, SpecPhase::written);
        REQUIRE(w.size() == 9);  // 5 settled + 4 drafts, the target's token not yet shown
        for (int i = 0; i < 5; ++i) {
            CHECK(w[size_t(i)].pos == i);
            CHECK(w[size_t(i)].state == (i < 3 ? SpecTokState::prompt : SpecTokState::generated));
        }
        for (int i = 0; i < 4; ++i) {
            CHECK(w[size_t(5 + i)].state == SpecTokState::drafted);
            CHECK(w[size_t(5 + i)].pos == 5 + i);
            CHECK(w[size_t(5 + i)].id == 10 + i);
        }
        const std::vector<SpecChip> rb = spec_chips(v, SpecPhase::rolled_back);
        REQUIRE(rb.size() == 10);
        for (int i = 0; i < 4; ++i)
            CHECK(rb[size_t(5 + i)].state == (i < a ? SpecTokState::accepted : SpecTokState::rejected));
        CHECK(rb.back().state == SpecTokState::target_pick);
        CHECK(rb.back().id == 20);
        CHECK(rb.back().pos == 5 + a);  // where the first rejected draft stood, or after all k
        CHECK(rb.back().bonus == (a == 4));
    }
    SUBCASE("before any round: the prompt only") {
        SpecView v;
        v.prompt_ids = v.tokens = {1, 2, 3};
        const auto c = spec_chips(v, SpecPhase::rolled_back);
        REQUIRE(c.size() == 3);
        CHECK(c[2].state == SpecTokState::prompt);
    }
}

TEST_CASE("rolled-back rows: target k - a rows, draft max(0, k - 1 - a), at the rejected positions") {
    Controller ctl("never");
    AppState app;
    const int k = 4;
    open_bundled_spec(ctl, app, k);
    int rejecting = 0;
    for (int i = 0; i < 8 && app.spec.can_round; ++i) {
        run(ctl, app, {CommandKind::step});
        REQUIRE(app.error.empty());
        const kv::SpecRound& r = *app.spec.last();
        const int T = r.n_tokens_before, a = r.accepted, ke = static_cast<int>(r.proposed.size());
        CAPTURE(i);
        CAPTURE(a);
        const RoundRows t = target_round_rows(r), d = draft_round_rows(r);
        CHECK(t.before == RowRange{0, r.start_pos});
        CHECK(t.kept == RowRange{r.start_pos, T + a});
        CHECK(t.rolled_back == RowRange{T + a, T + ke});
        CHECK(t.rolled_back.size() == ke - a);
        CHECK(d.rolled_back.size() == std::max(0, ke - 1 - a));
        if (d.rolled_back.size() > 0) CHECK(d.rolled_back.first == T + a);
        CHECK(d.kept.end == std::min(T + a, T + ke - 1));
        // what the views hold now: the kept rows only
        CHECK(app.spec.target_k.rows() == T + a);
        CHECK(app.spec.draft_k.rows() == d.kept.end);
        CHECK(app.main.cache_positions == T + a);
        CHECK(app.spec.gone_k.rows() == t.rolled_back.size());  // the trace records every head of tiny-gpt
        if (a < ke) ++rejecting;
    }
    CHECK(rejecting > 0);  // the bundled pair disagrees somewhere in 8 rounds
    CHECK(rows_text({9, 11}) == "rows 9-10");
    CHECK(rows_text({9, 10}) == "row 9");
    CHECK(rows_text({9, 9}) == "no rows");
}

TEST_CASE("speculative narration carries the round's own numbers") {
    Controller ctl("never");
    AppState app;
    open_bundled_spec(ctl, app, 4);
    CHECK(narrate_spec(app, SpecPhase::rolled_back).find("Press Step") != std::string::npos);
    bool saw_reject = false, saw_bonus = false;
    for (int i = 0; i < 10 && app.spec.can_round; ++i) {
        run(ctl, app, {CommandKind::step});
        const kv::SpecRound& r = *app.spec.last();
        const int k = static_cast<int>(r.proposed.size()), a = r.accepted, T = r.n_tokens_before;
        if (k == 0) continue;
        CAPTURE(i);
        const std::string s = narrate_spec(app, SpecPhase::rolled_back);
        CAPTURE(s);
        CHECK(s.find(std::to_string(a) + " of " + std::to_string(k) + " drafted tokens accepted") != std::string::npos);
        CHECK(s.find("1 target pass made " + std::to_string(a + 1) + " token") != std::string::npos);
        CHECK(s.find("'" + app.token_text(r.next_id) + "'") != std::string::npos);
        if (a < k) {
            saw_reject = true;
            const std::string rows = k - a == 1 ? "row " + std::to_string(T + a)
                                                : "rows " + std::to_string(T + a) + "-" + std::to_string(T + k - 1);
            CHECK(s.find(rows + " rolled back from the target's cache") != std::string::npos);
            CHECK(s.find("'" + app.token_text(r.proposed[size_t(a)]) + "' rejected") != std::string::npos);
        } else {
            saw_bonus = true;
            CHECK(s.find("bonus token") != std::string::npos);
            CHECK(s.find("nothing rolled back") != std::string::npos);
        }
        const kv::SpecCounters& t = app.spec.totals;
        CHECK(s.find(std::to_string(t.new_tokens) + " tokens in " + std::to_string(t.target_forwards) + " target pass") !=
              std::string::npos);
        const std::string w = narrate_spec(app, SpecPhase::written);
        CHECK(w.find("1 pass over " + std::to_string(r.target_input.size()) + " tokens") != std::string::npos);
        CHECK(w.find("rows " + std::to_string(r.start_pos) + "-" + std::to_string(T + k - 1)) != std::string::npos);
    }
    CHECK(saw_reject);
    CHECK(saw_bonus);
}

TEST_CASE("Back undoes one round: both caches equal a fresh run's and a plain session's rows") {
    Controller ctl("never");
    AppState app;
    open_bundled_spec(ctl, app, 4);
    for (int i = 0; i < 3; ++i) run(ctl, app, {CommandKind::step});
    REQUIRE(app.spec.n_rounds() == 3);
    run(ctl, app, {CommandKind::back});
    REQUIRE(app.spec.n_rounds() == 2);
    const kv::SpecDecoder& d = *ctl.spec_decoder();

    // A fresh decoder, two rounds.
    auto target = kv::load_model_folder(kModels + "/tiny-gpt");
    auto draft = kv::load_model_folder(kModels + "/tiny-draft");
    kv::SpecDecoder fresh(*target, kv::make_cpu_engine(*target), *draft, kv::make_cpu_engine(*draft), 4);
    fresh.set_prompt_ids(app.main.prompt_ids);
    fresh.round();
    fresh.round();
    CHECK(d.tokens() == fresh.tokens());
    CHECK(app.spec.tokens == fresh.tokens());
    CHECK(app.main.tokens == fresh.tokens());
    CHECK(d.totals() == fresh.totals());
    REQUIRE(d.target_cache().n_pos() == fresh.target_cache().n_pos());
    REQUIRE(d.draft_cache().n_pos() == fresh.draft_cache().n_pos());

    // A plain session fed the same tokens (the independent path): its cache holds the
    // positions the target's does.
    kv::Session plain(*target, kv::make_cpu_engine(*target));
    plain.set_prompt_ids(app.main.prompt_ids);
    while (plain.tokens().size() < d.tokens().size()) plain.step();
    CHECK(plain.tokens() == d.tokens());  // greedy speculative == plain greedy
    const kv::ModelConfig& c = target->config;
    for (int l = 0; l < c.n_layer; ++l)
        for (int h = 0; h < c.n_kv_head; ++h) {
            kv::RowMat k1, v1, k2, v2, k3, v3;
            REQUIRE(d.target_cache().read_positions(l, h, k1, v1));
            REQUIRE(fresh.target_cache().read_positions(l, h, k2, v2));
            REQUIRE(plain.cache().read_positions(l, h, k3, v3));
            CAPTURE(l);
            CAPTURE(h);
            CHECK((k1 - k2).cwiseAbs().maxCoeff() == 0.f);
            CHECK((v1 - v2).cwiseAbs().maxCoeff() == 0.f);
            REQUIRE(k3.rows() >= k1.rows());
            CHECK((k1 - k3.topRows(k1.rows())).cwiseAbs().maxCoeff() < 1e-5f);
            CHECK((v1 - v3.topRows(v1.rows())).cwiseAbs().maxCoeff() < 1e-5f);
        }
    const kv::ModelConfig& dc = draft->config;
    for (int l = 0; l < dc.n_layer; ++l)
        for (int h = 0; h < dc.n_kv_head; ++h) {
            kv::RowMat k1, v1, k2, v2;
            REQUIRE(d.draft_cache().read_positions(l, h, k1, v1));
            REQUIRE(fresh.draft_cache().read_positions(l, h, k2, v2));
            CHECK((k1 - k2).cwiseAbs().maxCoeff() == 0.f);
            CHECK((v1 - v2).cwiseAbs().maxCoeff() == 0.f);
        }
    // The published views hold the same rows.
    kv::RowMat k0, v0;
    REQUIRE(fresh.target_cache().read_positions(app.spec.layer, app.spec.kv_head, k0, v0));
    CHECK((app.spec.target_k - k0).cwiseAbs().maxCoeff() == 0.f);

    SUBCASE("back to the start, then the same rounds again") {
        run(ctl, app, {CommandKind::back_to});
        CHECK(app.spec.n_rounds() == 0);
        CHECK(ctl.spec_decoder()->target_cache().n_pos() == 0);
        run(ctl, app, {CommandKind::step});
        run(ctl, app, {CommandKind::step});
        CHECK(app.spec.tokens == fresh.tokens());
    }
}

TEST_CASE("Back undoes a sampled round: the same seed redraws a fresh run's tokens") {
    Controller ctl("never");
    AppState app;
    open_bundled_spec(ctl, app, 3);
    Command smp{CommandKind::set_sampling};
    smp.sampling.temperature = 0.9f;
    smp.sampling.top_k = 0;
    smp.sampling.seed = 11;
    run(ctl, app, smp);
    for (int i = 0; i < 4; ++i) run(ctl, app, {CommandKind::step});
    const std::vector<int> four = app.spec.tokens;
    run(ctl, app, {CommandKind::back});
    run(ctl, app, {CommandKind::back});
    auto target = kv::load_model_folder(kModels + "/tiny-gpt");
    auto draft = kv::load_model_folder(kModels + "/tiny-draft");
    kv::SpecDecoder fresh(*target, kv::make_cpu_engine(*target), *draft, kv::make_cpu_engine(*draft), 3);
    fresh.set_sampling(smp.sampling);
    fresh.set_prompt_ids(app.main.prompt_ids);
    fresh.round();
    fresh.round();
    CHECK(app.spec.tokens == fresh.tokens());
    CHECK(ctl.spec_decoder()->target_cache().n_pos() == fresh.target_cache().n_pos());
    CHECK(ctl.spec_decoder()->draft_cache().n_pos() == fresh.draft_cache().n_pos());
    run(ctl, app, {CommandKind::step});
    run(ctl, app, {CommandKind::step});
    CHECK(app.spec.tokens == four);  // forward again: the same draws
    kv::SpecDecoder greedy(*target, kv::make_cpu_engine(*target), *draft, kv::make_cpu_engine(*draft), 3);
    greedy.set_prompt_ids(app.main.prompt_ids);
    for (int i = 0; i < 4; ++i) greedy.round();
    CHECK(greedy.tokens() != four);  // the sampling reached the decoder (a greedy run differs)
}

TEST_CASE("speculative mode on and off: plain steps resume, compare is refused, a random pair works") {
    Controller ctl("never");
    AppState app;
    ctl.open(app, "random:tiny", "cpu", "5,9,3,7");
    REQUIRE(app.model != nullptr);
    app.vs.animate = false;
    run(ctl, app, {CommandKind::step});
    run(ctl, app, spec_cmd(true, 2));
    REQUIRE(app.error.empty());
    REQUIRE(app.spec.on);
    CHECK(app.spec.draft_name.rfind("random:tiny:", 0) == 0);
    CHECK(app.spec.draft_spec == app.spec.draft_name);  // what the Draft field shows loads again
    CHECK(app.main.n_steps() == 0);  // the target's view: no round yet
    run(ctl, app, {CommandKind::step});
    CHECK(app.spec.n_rounds() == 1);
    Command cmp{CommandKind::set_compare};
    cmp.flag = true;
    run(ctl, app, cmp);
    CHECK(app.error.find("speculative") != std::string::npos);
    CHECK_FALSE(app.compare);
    run(ctl, app, spec_cmd(false, 2));
    CHECK_FALSE(app.spec.on);
    CHECK(app.main.n_steps() == 1);  // the plain session as it was
    run(ctl, app, spec_cmd(true, 2, kModels + "/tiny-draft"));  // 96 vs 1058 tokens of vocabulary
    CHECK(app.error.find("vocabularies differ") != std::string::npos);
    CHECK_FALSE(app.spec.on);
}

TEST_CASE("speculative work chart: cumulative passes, and the expected speed-up formula") {
    CHECK(expected_speedup(0.5, 4, 0.1) == doctest::Approx((1 - std::pow(0.5, 5)) / (0.5 * 1.4)));
    CHECK(expected_speedup(1.0, 4, 0.0) == doctest::Approx(5.0));
    Controller ctl("never");
    AppState app;
    open_bundled_spec(ctl, app, 4);
    for (int i = 0; i < 4; ++i) run(ctl, app, {CommandKind::step});
    const SpecChart ch = spec_chart(app.spec);
    REQUIRE(ch.tokens.size() == 4);
    CHECK(ch.passes.back() == 4);  // one target pass per round
    double made = 0;
    for (const auto& r : app.spec.rounds) made += r->accepted + 1;
    CHECK(ch.tokens.back() == made);
    CHECK(ch.passes_per_token == doctest::Approx(4.0 / made));
    CHECK(ch.cost_ratio > 0.0);
    CHECK(ch.cost_ratio < 1.0);  // the draft is the smaller model
}

TEST_CASE("speculative panels draw in both phases at 1280x720, stacks balanced") {
    Headless hl;
    Controller ctl("never");
    AppState app;
    open_bundled_spec(ctl, app, 4);
    for (int hold : {0, 1, 2}) {
        app.vs.spec.hold = hold;
        hl.frame(app);
    }
    for (int i = 0; i < 12 && app.spec.can_round; ++i) {
        run(ctl, app, {CommandKind::step});
        for (int hold : {1, 2}) {
            app.vs.spec.hold = hold;
            hl.frame(app);
        }
    }
    run(ctl, app, {CommandKind::back});
    hl.frame(app);
}

TEST_CASE("the default draft: tiny-draft next to the target, the next seed for random models") {
    CHECK(default_draft_spec(kModels + "/tiny-gpt", kModels + "/tiny-gpt") ==
          std::filesystem::path(kModels + "/tiny-draft").lexically_normal().string());
    CHECK(default_draft_spec("random:tiny:3", "") == "random:tiny:4");
    CHECK(default_draft_spec("random:gpt2-124m", "") == "random:gpt2-124m:1");
}

TEST_CASE("the default draft is the bundled one of the target's family") {
    namespace fs = std::filesystem;
    // tiny-gpt and tiny-gqa (GPT-2): tiny-draft; tiny-llama: tiny-llama-draft (a Llama).
    CHECK(fs::equivalent(default_draft_spec("", kModels + "/tiny-gpt"), kModels + "/tiny-draft"));
    CHECK(fs::equivalent(default_draft_spec("", kModels + "/tiny-gqa"), kModels + "/tiny-draft"));
    CHECK(fs::equivalent(default_draft_spec("", kModels + "/tiny-llama/"), kModels + "/tiny-llama-draft"));
    CHECK(kv::load_model_folder(kModels + "/tiny-llama-draft")->config.is_llama());
    CHECK(default_draft_spec("random:llama-tiny:3", "") == "random:llama-tiny:4");
}
