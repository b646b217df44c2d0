// The engine against an independent NumPy GPT-2 (tests/reference/gpt2_numpy.py) on
// random small GPT-2 folders in Hugging Face layout: every position, atol 1e-4.
// Runs where /usr/bin/python3 has NumPy (scripts/test installs python3-numpy).
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

#include "core/engine/engine.h"
#include "core/model/model_io.h"
#include "test_helpers.h"

namespace fs = std::filesystem;

namespace {

const char* python() {
    for (const char* p : {"/usr/bin/python3", "/usr/local/bin/python3"})
        if (fs::exists(p)) return p;
    return nullptr;
}

bool have_numpy() {
    const char* py = python();
    if (!py) return false;
    return std::system((std::string(py) + " -c 'import numpy' 2>/dev/null").c_str()) == 0;
}

std::string run(const std::string& cmd) {
    const kvtest::Run r = kvtest::run_shell(cmd);
    CAPTURE(r.err);
    REQUIRE(r.rc == 0);
    return r.out;
}

}  // namespace

TEST_CASE("engine logits match an independent NumPy GPT-2 at every position") {
    if (!have_numpy()) {
        MESSAGE("skipped: /usr/bin/python3 with numpy not found (apt-get install python3-numpy)");
        return;
    }
    struct Shape { int V, T, C, L, H, Hkv; bool tied; };
    const Shape shapes[] = {{53, 16, 32, 2, 4, 4, true}, {71, 24, 48, 3, 3, 3, false}, {40, 12, 32, 2, 4, 2, true}};
    const fs::path root = fs::temp_directory_path() / ("kvscope_ref_" + std::to_string(::getpid()));
    int k = 0;
    for (const auto& sh : shapes) {
        CAPTURE(k);
        auto m = kvtest::random_model(sh.V, sh.T, sh.C, sh.L, sh.H, sh.Hkv, 100 + k, sh.tied);
        // Larger-than-init values make the comparison meaningful (attention not uniform).
        for (auto& l : m->weights.layers) l.attn_w *= 8.0f;
        m->weights.wte *= 25.0f;
        if (!sh.tied) m->weights.lm_head *= 25.0f;
        const fs::path dir = root / std::to_string(k++);
        fs::create_directories(dir);
        kv::save_model_folder(dir.string(), m->config, m->weights, nullptr);
        auto loaded = kv::load_model_folder(dir.string());
        const auto ids = kvtest::seq_ids(sh.T, sh.V, k);

        auto engine = kv::make_cpu_engine(*loaded);
        kv::ForwardRequest req;
        req.ids = ids;
        req.all_logits = true;
        req.trace_opts.record = false;
        kv::StepTrace tr;
        std::vector<float> mine;
        engine->forward(req, *engine->make_cache({}), tr, &mine);

        std::string id_list;
        for (int id : ids) id_list += (id_list.empty() ? "" : ",") + std::to_string(id);
        const auto ref = nlohmann::json::parse(run(std::string(python()) + " '" KVSCOPE_SOURCE_DIR
                                                   "/tests/reference/gpt2_numpy.py' '" + dir.string() + "' " + id_list))["logits"];
        REQUIRE(ref.size() == ids.size());
        double worst = 0, largest = 0;
        int worst_pos = -1, worst_j = -1;
        for (size_t pos = 0; pos < ids.size(); ++pos) {
            REQUIRE(ref[pos].size() == size_t(sh.V));
            for (int j = 0; j < sh.V; ++j) {
                const double r = ref[pos][j].get<double>();
                largest = std::max(largest, std::abs(r));
                const double d = std::abs(r - mine[pos * sh.V + j]);
                if (d > worst) worst = d, worst_pos = int(pos), worst_j = j;
            }
        }
        CAPTURE(worst_pos);
        CAPTURE(worst_j);
        MESSAGE("shape " << k << ": worst |engine - numpy| = " << worst << " at position " << worst_pos
                          << " (largest |logit| " << largest << ")");
        CHECK(largest > 1.0);  // logits large enough for the comparison to mean something
        CHECK(worst <= 1e-4);
    }
    fs::remove_all(root);
}
