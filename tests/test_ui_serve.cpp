// The serving view (ui/state/serve_view.h) against `kvscope-cli serve --preset NAME
// --trace-tables --json`, run as its own process on the same requests: after every step
// of the three presets, which slot of the grid shows which request's position and
// token, which blocks are shared and cached, and the block counts; the contiguous
// strip's bytes against the formula 2 x L x Hkv x hd x 4 per position; going back one
// step and forward again against a fresh run; the serving chapters' numbers recomputed
// from that JSON; and a headless draw of each preset where every block of the grid lies
// on screen, measured from the grid's own layout.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <string>

#include "core/model/model_io.h"
#include "tests/test_helpers.h"
#include "tests/ui_headless.h"
#include "ui/lesson/lesson.h"
#include "ui/runtime/serve_runner.h"
#include "ui/state/serve_view.h"

using json = nlohmann::json;
using namespace kvui;

namespace {

const std::string kTiny = KVSCOPE_SOURCE_DIR "/assets/models/tiny-gpt";
const char* kPresets[] = {"class", "forks", "small-pool"};

json serve_json(const std::string& preset) {
    const kvtest::Run r = kvtest::run_cli("serve --model " + kTiny + " --preset " + preset + " --trace-tables --json");
    REQUIRE(r.rc == 0);
    return json::parse(r.out);
}

ServeView view_of(const kv::Model& m, const std::string& preset) {
    ServeView v;
    v.run = run_serve_view(m, "cpu", kv::serve_preset(preset));
    return v;
}

// Sequence id -> its known tokens at the end (prompt, then every generated one).
std::vector<std::vector<int>> known_tokens(const json& d) {
    std::vector<std::vector<int>> out;
    for (const json& q : d["requests"]) {
        std::vector<int> t = q["prompt_ids"].get<std::vector<int>>();
        for (int id : q["tokens"]) t.push_back(id);
        out.push_back(t);
    }
    return out;
}

int64_t bytes_per_position(const kv::ModelConfig& c) { return 2LL * c.n_layer * c.n_kv_head * c.head_dim() * 4; }

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("serve view: the grid after every step of each preset matches serve --json of the same requests") {
    const auto m = kv::load_model(kTiny);
    for (const char* preset : kPresets) {
        CAPTURE(preset);
        const json d = serve_json(preset);
        ServeView v = view_of(*m, preset);
        REQUIRE(v.n_steps() == int(d["steps"].size()));
        const int B = d["pool"]["block_size"], P = d["pool"]["blocks"];
        const auto known = known_tokens(d);
        for (int k = 0; k < v.n_steps(); ++k) {
            CAPTURE(k);
            v.shown = k + 1;
            const PoolGrid g = pool_grid(v);
            const json& s = d["steps"][size_t(k)];
            REQUIRE(g.n_blocks == P);
            REQUIRE(g.block_size == B);
            int used = 0, cached = 0, free = 0, shared = 0, waste = 0;
            for (int b = 0; b < P; ++b) {
                const GridBlock& gb = g.blocks[size_t(b)];
                int filled = 0;
                for (int j = 0; j < B; ++j) filled += g.slot(b, j).look != SlotLook::empty;
                used += gb.state == kv::BlockState::used;
                cached += gb.state == kv::BlockState::cached;
                free += gb.state == kv::BlockState::free;
                shared += gb.ref_count > 1;
                if (gb.state == kv::BlockState::used) waste += B - filled;
                if (gb.state == kv::BlockState::free) CHECK(filled == 0);
                for (int j = 0; j < B; ++j) {
                    const SlotLook look = g.slot(b, j).look;
                    if (look == SlotLook::empty) continue;
                    CHECK(look == (gb.state == kv::BlockState::cached ? SlotLook::cached
                                   : gb.ref_count > 1                 ? SlotLook::shared
                                                                      : SlotLook::used));
                }
            }
            CHECK(used == s["blocks"]["used"]);
            CHECK(cached == s["blocks"]["cached"]);
            CHECK(free == s["blocks"]["free"]);
            CHECK(shared == s["blocks"]["shared"]);
            CHECK(waste == s["waste_slots"]);
            // Every traced table of a sequence still running after the step: block i
            // holds positions i*B.. of that sequence's tokens, full but for the last.
            const std::set<int> finished(s["finished"].begin(), s["finished"].end());
            std::map<int, int> tables_of;  // block -> tables mapping it
            for (const json& t : s["tables"]) {
                const int id = t["id"];
                if (finished.count(id)) continue;
                const auto table = t["block_table"].get<std::vector<int>>();
                CAPTURE(id);
                for (size_t i = 0; i < table.size(); ++i) {
                    const int b = table[i];
                    ++tables_of[b];
                    int filled = 0;
                    for (int j = 0; j < B; ++j) {
                        const GridSlot& gs = g.slot(b, j);
                        if (gs.look == SlotLook::empty) continue;
                        ++filled;
                        const int pos = int(i) * B + j;
                        CHECK(gs.pos == pos);
                        CHECK(gs.token == known[size_t(id)][size_t(pos)]);
                        // Coloured by the request that computed it: its own, or a prefix hit's.
                        const json& q = d["requests"][size_t(id)];
                        if (gs.request != q["request"]) CHECK(int(i) < q["prefix_blocks_hit"].get<int>());
                    }
                    if (i + 1 < table.size()) CHECK(filled == B);
                    else CHECK(filled >= 1);
                }
            }
            for (const auto& [b, n] : tables_of) CHECK(g.blocks[size_t(b)].ref_count == n);
            // The flashes: this step's copies and the preempted sequences' former blocks.
            int copied = 0, preempted_blocks = 0;
            for (const GridBlock& gb : g.blocks) copied += gb.copied_now, preempted_blocks += gb.preempted_now;
            CHECK(copied == s["copies"]);
            CHECK((preempted_blocks > 0) == !s["preempted"].empty());
        }
        CHECK(v.run->result.cow_copies == d["totals"]["cow_copies"]);
        CHECK(v.run->result.preemptions == d["totals"]["preemptions"]);
        CHECK(v.run->result.prefix_hits == d["totals"]["prefix_hits"]);
    }
}

TEST_CASE("serve view: the presets teach what they say") {
    const json c = serve_json("class"), f = serve_json("forks"), s = serve_json("small-pool");
    CHECK(c["totals"]["prefix_hits"].get<int>() > 0);      // the shared first block
    CHECK(c["totals"]["preemptions"] == 0);
    CHECK(f["totals"]["cow_copies"] == 3);                   // 4 forks, the last keeps the original
    CHECK(f["steps"][1]["copies"] == 3);                     // at the forks' first write
    CHECK(s["totals"]["preemptions"].get<int>() >= 1);
    for (const json* d : {&c, &f, &s}) {
        CHECK((*d)["pool"]["blocks"].get<int>() <= 16);      // readable: at most 16 blocks of 4
        CHECK((*d)["pool"]["block_size"] == 4);
    }
}

TEST_CASE("serve view: the contiguous strip's bytes are the formula's") {
    const auto m = kv::load_model(kTiny);
    const int64_t bpp = bytes_per_position(m->config);
    for (const char* preset : kPresets) {
        CAPTURE(preset);
        const json d = serve_json(preset);
        ServeView v = view_of(*m, preset);
        CHECK(d["pool"]["bytes_per_block"] == 4 * bpp);
        const int64_t pool_bytes = int64_t(d["pool"]["blocks"]) * 4 * bpp;
        for (int k = 0; k < v.n_steps(); ++k) {
            CAPTURE(k);
            v.shown = k + 1;
            const ContiguousStrip c = contiguous_strip(v);
            const json& s = d["steps"][size_t(k)];
            CHECK(c.pool_bytes == pool_bytes);
            CHECK(c.reserved_bytes == int64_t(s["contiguous_slots"]) * bpp);
            CHECK(c.used_bytes == int64_t(s["held_positions"]) * bpp);
            CHECK(c.paged_bytes == int64_t(s["blocks"]["used"]) * int64_t(d["pool"]["bytes_per_block"]));
            // Reservations, in sequence order, while their sum fits the pool's bytes.
            int64_t sum = 0;
            int fit = 0;
            for (const StripSeq& q : c.seqs) {
                const json& r = d["requests"][size_t(q.seq)];
                CHECK(q.reserved_slots == int64_t(r["prompt_ids"].size() + r["tokens"].size()));
                sum += q.reserved_slots * bpp;
                if (sum > pool_bytes) break;
                ++fit;
            }
            CHECK(c.fit == fit);
        }
    }
}

TEST_CASE("serve view: back then step shows exactly what a fresh run records at that step") {
    const auto m = kv::load_model(kTiny);
    for (const char* preset : kPresets) {
        CAPTURE(preset);
        ServeView v = view_of(*m, preset);
        const ServeView fresh = view_of(*m, preset);
        REQUIRE(fresh.n_steps() == v.n_steps());
        CHECK_FALSE(serve_back(v));  // nothing before the first step
        while (serve_step(v)) {
            const int k = v.shown;
            CAPTURE(k);
            REQUIRE(serve_back(v));
            CHECK(v.shown == k - 1);
            REQUIRE(serve_step(v));
            const kv::PoolSnapshot& a = *v.pool();
            const kv::PoolSnapshot& b = *fresh.run->result.steps[size_t(k - 1)].pool;
            CHECK(a.same_state(b));  // tables, blocks, slots and tokens
            CHECK(a.k0 == b.k0);     // the stored keys too
            const PoolGrid ga = pool_grid(v);
            ServeView at = fresh;
            at.shown = k;
            const PoolGrid gb = pool_grid(at);
            for (size_t i = 0; i < ga.slots.size(); ++i) CHECK(ga.slots[i].pos == gb.slots[i].pos);
        }
        CHECK(v.shown == v.n_steps());
        CHECK_FALSE(serve_step(v));
    }
}

TEST_CASE("serve view: the serving chapters' numbers are serve --json's") {
    Controller ctl("never");
    AppState app;
    ctl.open(app, kTiny, "cpu", "Python is a programming");
    REQUIRE(app.model);
    app.vs.animate = false;
    const int64_t bpp = bytes_per_position(app.model->config);
    auto go = [&](int n) {
        enter_lesson(app, n);
        for (int i = 0; i < 4 && (!app.pending.empty() || app.vs.lesson.setup != 0); ++i) {
            ctl.settle(app);
            lesson_tick(app);
        }
        REQUIRE(app.error.empty());
        return chapter_text(lesson_chapter(n), app);
    };
    SUBCASE("13: paged") {
        const json d = serve_json("class");
        const std::string t = go(13);
        CAPTURE(t);
        const int k = lesson_chapter(13).setup.serve_steps;
        const json& s = d["steps"][size_t(k - 1)];
        const int running = int(s["running"].size()) - int(s["finished"].size());
        CHECK(has(t, "After step " + std::to_string(k) + " of " + std::to_string(d["steps"].size()) + ": " +
                         std::to_string(running) + " sequences in one pool of 16 blocks of 4 slots"));
        CHECK(has(t, "Their " + std::to_string(int(s["held_positions"])) + " positions take " +
                         std::to_string(int(s["blocks"]["used"])) + " blocks (" +
                         human_bytes(double(int64_t(s["blocks"]["used"]) * 4 * bpp)) + "), " +
                         std::to_string(int(s["waste_slots"])) + " slots empty"));
        const int64_t reserved = int64_t(s["contiguous_slots"]) * bpp, used = int64_t(s["held_positions"]) * bpp;
        char waste[16];
        std::snprintf(waste, sizeof waste, "(%.0f%% waste)", (1.0 - double(used) / double(reserved)) * 100.0);
        CHECK(has(t, "would take " + human_bytes(double(reserved)) + ", " + human_bytes(double(used)) + " used now " +
                         waste));
        CHECK(has(t, "the pool's " + human_bytes(double(16 * 4 * bpp)) + " holds"));
        CHECK(has(t, "paged peak " + human_bytes(double(int64_t(d["totals"]["peak_bytes"])))));
        CHECK(has(t, "contiguous " + human_bytes(double(int64_t(d["totals"]["contiguous"]["reserved_bytes"])))));
    }
    SUBCASE("14: prefix sharing and copy-on-write") {
        const json d = serve_json("forks");
        const std::string t = go(14);
        CAPTURE(t);
        const int k = lesson_chapter(14).setup.serve_steps;
        const json& s = d["steps"][size_t(k - 1)];
        CHECK(has(t, "sampled 4 ways"));
        CHECK(has(t, "(" + std::to_string(d["requests"][0]["prompt_ids"].size()) + " tokens)"));
        CHECK(has(t, std::to_string(int(s["blocks"]["shared"])) + " block"));
        CHECK(has(t, std::to_string(int(s["copies"])) + " copies this step"));
        CHECK(has(t, "Blocks in use: " + std::to_string(int(s["blocks"]["used"]))));
    }
    SUBCASE("15: batching") {
        const json d = serve_json("class");
        const std::string t = go(15);
        CAPTURE(t);
        const int k = lesson_chapter(15).setup.serve_steps;
        const json& s = d["steps"][size_t(k - 1)];
        CHECK(has(t, "fed " + std::to_string(int(s["tokens"])) + " tokens of " + std::to_string(s["running"].size()) +
                         " sequences in one forward"));
        const ServeRun& r = *app.serve.run;
        int peak = 0;
        for (const json& st : d["steps"]) peak = std::max(peak, int(st["running"].size()));
        CHECK(r.batch.size == peak);
        CHECK(r.large_single.size == 1);
        CHECK(r.large_batch.size == peak);
        // The weights a decode step reads: every layer's matrices and biases, the final
        // norm and the (tied) head, in f32: 4 x (L (12 C^2 + 13 C) + 2 C + V C).
        const kv::ModelConfig& c = app.model->config;
        const int64_t C = c.n_embd, L = c.n_layer, V = c.vocab_size;
        CHECK(has(t, "this model (" + human_bytes(double(4 * (L * (12 * C * C + 13 * C) + 2 * C + V * C))) + " of weights"));
        char x[32];
        std::snprintf(x, sizeof x, "%.1fx", r.large_batch.tokens_per_s / r.large_single.tokens_per_s);
        CHECK(has(t, x));
    }
}

TEST_CASE("serve view: every block of each preset is on screen at 1280x720 x1.5 and 1920x1080 x2") {
    kvtest::Headless h;
    Controller ctl("never");
    AppState app;
    ctl.open(app, kTiny, "cpu", "Python is a programming");
    REQUIRE(app.model);
    app.vs.animate = false;
    struct Size {
        float w, h, scale;
    };
    for (Size sz : {Size{1280, 720, 1.5f}, Size{1920, 1080, 2.f}}) {
        const float px = window_font_px(sz.h, sz.scale);
        h.resize(sz.w, sz.h, px);
        for (const char* preset : kPresets) {
            CAPTURE(sz.w);
            CAPTURE(preset);
            kvtest::run_command(ctl, app, serve_command(kv::serve_preset(preset), 1 << 20));
            REQUIRE(app.serve.run);
            app.serve.on = true;
            for (int k : {1, app.serve.n_steps() / 2 + 1, app.serve.n_steps()}) {
                CAPTURE(k);
                app.serve.shown = k;
                for (int f = 0; f < 2; ++f) h.frame(app);
                const ServeDrawn& d = app.serve_drawn;
                REQUIRE(d.drawn);
                REQUIRE(int(d.blocks.size()) == app.serve.run->result.n_blocks);
                CHECK(d.in_view == int(d.blocks.size()));
                CHECK(d.geometry.cell >= kMinGridCell);          // each slot, so each block, >= 12 px a side
                CHECK(d.geometry.block_w() >= kMinGridCell);
                for (const Rect& r : d.blocks) CHECK(r.inside(sz.w, sz.h));
            }
            const ServeLayout L = compute_serve_layout(sz.w, sz.h, px);
            if (sz.scale >= 2.f) {  // the focus layout: the pool across the whole width
                CHECK(L.focus);
                CHECK(L.pool.w >= sz.w - 8.f - 0.5f);
            }
        }
    }
    app.serve.on = false;
}

TEST_CASE("serve view: V enters and leaves, Space and Left move through the run, not the session") {
    Controller ctl("never");
    AppState app;
    ctl.open(app, kTiny, "cpu", "Python is a programming");
    REQUIRE(app.model);
    CHECK(key_action(86, false) == KeyAction::serving);
    apply_key_action(app, KeyAction::serving);
    CHECK(app.serve.on);
    ctl.submit(app);
    ctl.wait();
    ctl.poll(app);
    REQUIRE(app.serve.run);
    CHECK(app.serve.run->setup.name == "class");
    CHECK(app.serve.shown == 0);
    const int session_steps = app.main.n_steps();
    apply_key_action(app, KeyAction::step);
    apply_key_action(app, KeyAction::step);
    CHECK(app.serve.shown == 2);
    apply_key_action(app, KeyAction::back);
    CHECK(app.serve.shown == 1);
    CHECK(app.pending.empty());  // nothing for the session
    CHECK(app.main.n_steps() == session_steps);
    apply_key_action(app, KeyAction::serving);
    CHECK_FALSE(app.serve.on);
}
