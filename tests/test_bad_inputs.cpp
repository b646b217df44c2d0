// The bad-input table of docs/bad-inputs.md, one TEST_CASE per row: each bad input
// goes through kvscope-cli (as a user would meet it) and the test checks the exit code
// and the one line on stderr. Model folders are written here: a small random model
// with a word-level vocab.txt, then broken one way per case.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/text/bpe_tokenizer.h"
#include "core/error.h"
#include "core/model/model_io.h"
#include "core/text/tokenizer.h"
#include "core/model/weights.h"
#include "test_helpers.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using kvtest::Run;
using kvtest::run_cli;

int count_lines(const std::string& s) {
    int c = 0;
    for (char ch : s) c += ch == '\n';
    return c;
}

bool has(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

// An error as the user sees it: exit code rc, nothing on stdout, exactly one line on
// stderr starting "kvscope-cli: " and containing every needle.
// KVSCOPE_BAD_INPUTS_PRINT=1 prints each case's exit code and stderr (to refresh the
// table in docs/bad-inputs.md).
void check_error(const Run& r, int rc, std::initializer_list<std::string> needles) {
    CAPTURE(r.err);
    if (std::getenv("KVSCOPE_BAD_INPUTS_PRINT")) std::printf("[exit %d] %s", r.rc, r.err.c_str());
    CHECK(r.rc == rc);
    CHECK(r.out.empty());
    CHECK(count_lines(r.err) == 1);
    CHECK(r.err.rfind("kvscope-cli: ", 0) == 0);
    for (const auto& nd : needles) {
        CAPTURE(nd);
        CHECK(has(r.err, nd));
    }
}

const std::vector<std::string> kWords = {"<unk>", "the", "cat", "sat", "on", "mat", ".", "a",
                                         "dog", "ran", "to", "it", ",", "and", "is", "big"};

// A model folder "<tmp>/kvscope_bad_<pid>_<n>/m": V 16, T 8, C 8, L 1, H 2, vocab.txt.
struct ModelDir {
    fs::path root, dir;
    kv::ModelConfig cfg;
    explicit ModelDir(bool with_vocab = true, int V = 16) {
        static std::atomic<int> counter{0};
        root = fs::temp_directory_path() /
               ("kvscope_bad_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::remove_all(root);
        dir = root / "m";
        cfg.vocab_size = V;
        cfg.n_ctx = 8;
        cfg.n_embd = 8;
        cfg.n_layer = 1;
        cfg.n_head = 2;
        cfg.n_kv_head = 2;
        const kv::Weights w = kv::random_weights(cfg, 7);
        kv::WordTokenizer tok(kWords);
        kv::save_model_folder(dir.string(), cfg, w, with_vocab ? &tok : nullptr);
    }
    ~ModelDir() {
        std::error_code ec;
        fs::permissions(dir / "config.json", fs::perms::owner_all, ec);
        fs::permissions(dir / "model.safetensors", fs::perms::owner_all, ec);
        fs::remove_all(root, ec);
    }
    std::string file(const std::string& name) const { return (dir / name).string(); }
    std::string model_arg() const { return "--model '" + dir.string() + "'"; }
};

std::string read_bytes(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& p, const std::string& s) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out << s;
}

// Rewrites the JSON header of a safetensors file (the data section is kept as is).
template <class F>
void edit_header(const std::string& path, F&& edit) {
    const std::string bytes = read_bytes(path);
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    json h = json::parse(bytes.substr(8, n));
    edit(h);
    std::string text = h.dump();
    while ((8 + text.size()) % 8) text += ' ';
    const uint64_t m = text.size();
    write_bytes(path, std::string(reinterpret_cast<const char*>(&m), 8) + text + bytes.substr(8 + n));
}

// Byte offset in the file of element `i` of an F32 tensor.
size_t element_offset(const std::string& path, const std::string& tensor, size_t i) {
    const std::string bytes = read_bytes(path);
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    const json h = json::parse(bytes.substr(8, n));
    return 8 + n + h[tensor]["data_offsets"][0].get<size_t>() + 4 * i;
}

void edit_config(const std::string& path, const char* key, const json& value) {
    json c = json::parse(read_bytes(path));
    c[key] = value;
    write_bytes(path, c.dump(2));
}

}  // namespace

TEST_CASE("bad input: empty prompt") {
    ModelDir m;
    for (const std::string prompt : {"''", "'   '", "'\t\n'"}) {
        CAPTURE(prompt);
        check_error(run_cli("generate " + m.model_arg() + " --prompt " + prompt + " --new 2"), 2,
                    {"--prompt: empty; type at least one word"});
    }
}

TEST_CASE("bad input: all-unknown words run as <unk> with a note") {
    ModelDir m;
    const Run r = run_cli("generate " + m.model_arg() + " --prompt 'zebra quantum' --new 2 --json");
    CAPTURE(r.err);
    REQUIRE(r.rc == 0);
    CHECK(has(r.err, "note: not in the vocabulary of m, read as <unk>: 'zebra', 'quantum'"));
    CHECK(json::parse(r.out)["prompt_ids"] == json::array({0, 0}));
    const Run t = run_cli("tokenize " + m.model_arg() + " --text 'zebra'");
    REQUIRE(t.rc == 0);
    CHECK(json::parse(t.out)["unknown"] == json::array({"zebra"}));
}

TEST_CASE("bad input: prompt past n_ctx") {
    ModelDir m;
    SUBCASE("--ids longer than the context") {
        check_error(run_cli("generate " + m.model_arg() + " --ids 1,2,3,4,5,6,7,8,9 --new 1"), 2,
                    {"prompt: 9 tokens, but m's context holds 8"});
    }
    SUBCASE("--prompt longer than the context") {
        check_error(run_cli("generate " + m.model_arg() + " --prompt 'the cat sat on the mat and the dog' --new 1"),
                    2, {"prompt: 9 tokens, but m's context holds 8"});
    }
    SUBCASE("prompt plus --new past the context") {
        check_error(run_cli("generate " + m.model_arg() + " --ids 1,2,3,4 --new 6"), 2,
                    {"--new: 6 new tokens after a 4-token prompt need 9 positions; m's context holds 8"});
    }
    SUBCASE("logits --ids longer than the context") {
        check_error(run_cli("logits " + m.model_arg() + " --ids 1,2,3,4,5,6,7,8,9"), 2,
                    {"--ids: 9 tokens exceed the context of 8"});
    }
}

TEST_CASE("bad input: truncated model.safetensors") {
    ModelDir m;
    const std::string st = m.file("model.safetensors");
    const std::string bytes = read_bytes(st);
    SUBCASE("cut in the data section") {
        write_bytes(st, bytes.substr(0, bytes.size() - 100));
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {st + ": tensor ", "are outside the data section of", "(file truncated?)"});
    }
    SUBCASE("cut in the header") {
        write_bytes(st, bytes.substr(0, 100));
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {st + ": safetensors header length", "is beyond the end of the file (100 bytes"});
    }
    SUBCASE("cut before the header length") {
        write_bytes(st, bytes.substr(0, 5));
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {st + ": file is 5 bytes, shorter than the 8-byte safetensors header length (truncated?)"});
    }
    SUBCASE("empty file") {
        write_bytes(st, "");
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1, {st + ": file is 0 bytes"});
    }
}

TEST_CASE("bad input: wrong dtype") {
    ModelDir m;
    const std::string st = m.file("model.safetensors");
    SUBCASE("a dtype kvscope does not read") {
        edit_header(st, [](json& h) { h["wte.weight"]["dtype"] = "I32"; });
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {st + ": tensor wte.weight has dtype I32, which kvscope does not read (supported: F32, F16, BF16)"});
    }
    SUBCASE("a dtype safetensors does not know") {
        edit_header(st, [](json& h) { h["wte.weight"]["dtype"] = "Q4_K"; });
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {st + ": tensor wte.weight: unknown dtype 'Q4_K'"});
    }
    SUBCASE("a dtype whose size disagrees with the offsets") {
        edit_header(st, [](json& h) { h["wte.weight"]["dtype"] = "F16"; });
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {st + ": tensor wte.weight: data_offsets span 512 bytes but shape [16, 8] of F16 needs 256 bytes"});
    }
}

TEST_CASE("bad input: NaN and infinite weights") {
    ModelDir m;
    const std::string st = m.file("model.safetensors");
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
        CAPTURE(bad);
        std::string bytes = read_bytes(st);
        const std::string clean = bytes;
        std::memcpy(bytes.data() + element_offset(st, "h.0.mlp.c_fc.weight", 5), &bad, 4);
        write_bytes(st, bytes);
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {st + ": tensor h.0.mlp.c_fc.weight holds a non-finite value (", ") at element 5"});
        write_bytes(st, clean);
    }
}

TEST_CASE("bad input: missing tokenizer") {
    SUBCASE("no tokenizer file: --ids works, --prompt is refused") {
        ModelDir m(false);
        check_error(run_cli("generate " + m.model_arg() + " --prompt 'the cat' --new 1"), 2,
                    {"--prompt: model 'm' has no tokenizer (its folder has no vocab.txt, or vocab.json + merges.txt; "
                     "use --ids 1,2,3)"});
        CHECK(run_cli("generate " + m.model_arg() + " --ids 1,2 --new 1").rc == 0);
        check_error(run_cli("tokenize " + m.model_arg() + " --text hi"), 2, {"--model: 'm' has no tokenizer"});
    }
    SUBCASE("vocab.json without merges.txt") {
        ModelDir m(false);
        write_bytes(m.file("vocab.json"), "{}");
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {m.file("merges.txt") + ": no such file (vocab.json needs merges.txt beside it)"});
    }
    SUBCASE("merges.txt without vocab.json") {
        ModelDir m(false);
        write_bytes(m.file("merges.txt"), "#version: 0.2\n");
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {m.file("vocab.json") + ": no such file (merges.txt needs vocab.json beside it)"});
    }
    SUBCASE("no config.json") {
        ModelDir m;
        fs::remove(m.file("config.json"));
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {m.file("config.json") + ": no such file (a model folder needs config.json and model.safetensors)"});
    }
}

TEST_CASE("bad input: huge header length") {
    ModelDir m;
    const std::string st = m.file("model.safetensors");
    std::string bytes = read_bytes(st);
    const uint64_t huge = uint64_t(1) << 62;
    std::memcpy(bytes.data(), &huge, 8);
    write_bytes(st, bytes);
    check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                {st + ": safetensors header length 4611686018427387904 is beyond the end of the file (" +
                 std::to_string(bytes.size()) + " bytes; truncated or not a safetensors file?)"});
}

TEST_CASE("bad input: header that is not JSON") {
    ModelDir m;
    const std::string st = m.file("model.safetensors");
    std::string bytes = read_bytes(st);
    bytes[8] = '[';
    bytes[9] = '[';
    write_bytes(st, bytes);
    check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                {st + ": safetensors header is not valid JSON ("});
}

TEST_CASE("bad input: directory instead of file") {
    ModelDir m;
    SUBCASE("model.safetensors is a folder") {
        fs::remove(m.file("model.safetensors"));
        fs::create_directory(m.file("model.safetensors"));
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {m.file("model.safetensors") + ": is a directory, expected a safetensors file"});
    }
    SUBCASE("config.json is a folder") {
        fs::remove(m.file("config.json"));
        fs::create_directory(m.file("config.json"));
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {m.file("config.json") + ": is a directory, expected a file"});
    }
    SUBCASE("vocab.txt is a folder") {
        fs::remove(m.file("vocab.txt"));
        fs::create_directory(m.file("vocab.txt"));
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {m.file("vocab.txt") + ": is a directory, expected vocab.txt"});
    }
    SUBCASE("--model names a file") {
        check_error(run_cli("generate --model '" + m.file("config.json") + "' --ids 1 --new 1"), 1,
                    {"model '" + m.file("config.json") + "': is a file, not a folder"});
    }
    SUBCASE("--model names nothing") {
        check_error(run_cli("generate --model '" + m.file("nope") + "' --ids 1 --new 1"), 1,
                    {"model '" + m.file("nope") + "': no such folder"});
    }
}

// As root (CI containers), chmod 000 does not stop reading: the model loads. The
// non-root behaviour is then checked by running kvscope-cli as user nobody through
// setpriv, where the build tree allows it; otherwise that half is reported skipped.
std::string as_unprivileged_prefix() {
    if (::geteuid() != 0) return "";
    static const std::string prefix = [] {
        const std::string p = "setpriv --reuid=nobody --regid=nogroup --clear-groups ";
        const std::string probe = p + "'" + KVSCOPE_CLI + "' --help >/dev/null 2>&1";
        return std::system(probe.c_str()) == 0 ? p : std::string("none");
    }();
    return prefix;
}

Run run_cli_unprivileged(const std::string& args) {
    const std::string p = as_unprivileged_prefix();
    return run_cli(args, p == "none" ? "" : p);
}

TEST_CASE("bad input: unreadable file (chmod 000)") {
    ModelDir m;
    fs::permissions(m.root, fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec |
                                fs::perms::group_read | fs::perms::group_exec);
    const bool can_drop = as_unprivileged_prefix() != "none";
    for (const std::string name : {"config.json", "model.safetensors", "vocab.txt"}) {
        CAPTURE(name);
        const std::string p = m.file(name);
        fs::permissions(p, fs::perms::none);
        if (::geteuid() == 0) {
            MESSAGE("running as root: chmod 000 does not stop root reading " << name << "; the model loads");
            CHECK(run_cli("generate " + m.model_arg() + " --ids 1 --new 1").rc == 0);
        }
        if (can_drop) {
            check_error(run_cli_unprivileged("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                        {p + ": cannot open (Permission denied)"});
        } else {
            MESSAGE("cannot run kvscope-cli as an unprivileged user here: the non-root message is not checked");
        }
        fs::permissions(p, fs::perms::owner_read | fs::perms::owner_write | fs::perms::others_read);
    }
    SUBCASE("a model folder that cannot be searched") {
        fs::permissions(m.dir, fs::perms::none);
        if (can_drop)
            check_error(run_cli_unprivileged("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                        {m.file("config.json") + ": cannot open (Permission denied)"});
        fs::permissions(m.dir, fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
    }
}

TEST_CASE("bad input: vocab.json and merges.txt disagree") {
    ModelDir m(false, 300);
    // The 256 byte tokens of GPT-2's alphabet (bytes_to_unicode), then "he".
    json v = json::object();
    for (int b = 0; b < 256; ++b) {
        const char32_t cp = kv::Gpt2BpeTokenizer::byte_to_unicode(uint8_t(b));
        std::string k;
        if (cp < 0x80) {
            k += char(cp);
        } else {
            k += char(0xC0 | (cp >> 6));
            k += char(0x80 | (cp & 0x3F));
        }
        v[k] = b;
    }
    v["he"] = 256;
    write_bytes(m.file("vocab.json"), v.dump());
    SUBCASE("a merge uses a token vocab.json lacks") {
        write_bytes(m.file("merges.txt"), "#version: 0.2\nh e\nx yz\n");
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {m.file("vocab.json") + " and " + m.file("merges.txt") + " disagree: merge 'x yz' at " +
                     m.file("merges.txt") + " line 3 uses 'yz', which is not in " + m.file("vocab.json")});
    }
    SUBCASE("a merge produces a token vocab.json lacks") {
        write_bytes(m.file("merges.txt"), "#version: 0.2\nh e\na b\n");
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {"disagree: merge 'a b' at " + m.file("merges.txt") + " line 3 produces 'ab', which is not in"});
    }
    SUBCASE("a merges.txt line that is not two tokens") {
        write_bytes(m.file("merges.txt"), "#version: 0.2\nh e\nhe\n");
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {m.file("merges.txt") + " line 3: expected two tokens separated by one space, got 'he'"});
    }
    SUBCASE("the agreeing pair loads and tokenizes") {
        write_bytes(m.file("merges.txt"), "#version: 0.2\nh e\n");
        const Run r = run_cli("tokenize " + m.model_arg() + " --text 'hehe'");
        REQUIRE(r.rc == 0);
        CHECK(json::parse(r.out)["ids"] == json::array({256, 256}));
    }
}

TEST_CASE("bad input: tokenizer and config.json disagree on the vocabulary") {
    ModelDir m;
    std::string extra;
    for (int i = 0; i < 4; ++i) extra += "word" + std::to_string(i) + "\n";
    write_bytes(m.file("vocab.txt"), read_bytes(m.file("vocab.txt")) + extra);
    check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                {m.file("vocab.txt") + ": has 20 tokens but config.json vocab_size is 16"});
}

TEST_CASE("bad input: broken vocab.txt") {
    ModelDir m;
    SUBCASE("first line is not <unk>") {
        write_bytes(m.file("vocab.txt"), "the\ncat\n");
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {m.file("vocab.txt") + ": line 1: first token must be <unk>, found 'the'"});
    }
    SUBCASE("a word twice") {
        write_bytes(m.file("vocab.txt"), "<unk>\ncat\ndog\ncat\n");
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {m.file("vocab.txt") + ": line 4: token 'cat' repeats line 2"});
    }
    SUBCASE("empty file") {
        write_bytes(m.file("vocab.txt"), "");
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {m.file("vocab.txt") + ": is empty (line 1 must be <unk>)"});
    }
}

TEST_CASE("bad input: config.json contradicts the tensors") {
    ModelDir m;
    const std::string cfg = m.file("config.json"), st = m.file("model.safetensors");
    SUBCASE("n_embd") {
        edit_config(cfg, "n_embd", 16);
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {st + ": tensor wte.weight has shape [16, 8], config.json says [16, 16] (vocab_size 16, n_embd 16)"});
    }
    SUBCASE("n_layer more than the file has") {
        edit_config(cfg, "n_layer", 3);
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {st + ": tensor h.1.ln_1.weight is missing: config.json says n_layer 3 but the file has layers h.0..h.0"});
    }
    SUBCASE("n_layer fewer than the file has") {
        edit_header(st, [](json& h) { h["h.1.ln_1.weight"] = h["h.0.ln_1.weight"]; });
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {st + ": tensor h.1.ln_1.weight belongs to layer 1 but config.json says n_layer 1"});
    }
    SUBCASE("n_positions") {
        edit_config(cfg, "n_positions", 4);
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {st + ": tensor wpe.weight has shape [8, 8], config.json says [4, 8] (n_positions 4, n_embd 8)"});
    }
    SUBCASE("an impossible shape") {
        edit_config(cfg, "n_head", 3);
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {cfg + ": n_embd 8 is not a multiple of n_head 3"});
    }
    SUBCASE("a key of the wrong type") {
        edit_config(cfg, "n_layer", "two");
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1,
                    {cfg + ": key \"n_layer\" must be an integer, found string \"two\""});
    }
    SUBCASE("not JSON") {
        write_bytes(cfg, "{\"vocab_size\": 16,");
        check_error(run_cli("generate " + m.model_arg() + " --ids 1 --new 1"), 1, {cfg + ": not valid JSON ("});
    }
}

TEST_CASE("bad input: --ids out of range or malformed") {
    struct Case {
        const char* ids;
        const char* message;
    };
    const Case cases[] = {
        {"5,999", "--ids: token id 999 is outside the vocabulary [0, 96) of random:tiny:0"},
        {"1,,2", "--ids: empty item in '1,,2'"},
        {"1,x", "--ids: 'x' is not a token id (a non-negative integer)"},
        {"1,-3", "--ids: '-3' is not a token id (a non-negative integer)"},
        {"99999999999999999999", "--ids: '99999999999999999999' is not a token id"},
        {" ", "--ids: the id list is empty (example: 5,9,3,7)"},
        {"1,2,", "--ids: empty item in '1,2,'"},
    };
    for (const auto& c : cases) {
        const std::string ids = c.ids;
        CAPTURE(ids);
        check_error(run_cli(std::string("generate --model random:tiny --ids='") + c.ids + "' --new 1"), 2, {c.message});
    }
}

TEST_CASE("bad input: bad --new") {
    check_error(run_cli("generate --model random:tiny --ids 1 --new 0"), 2, {"--new: must be at least 1"});
    check_error(run_cli("generate --model random:tiny --ids 1 --new -4"), 2, {"--new"});
    check_error(run_cli("generate --model random:tiny --ids 1 --new abc"), 2, {"--new", "abc"});
    check_error(run_cli("generate --model random:tiny --ids 1"), 2, {"--new is required"});
    // An empty --ids= is about --ids, not --new.
    check_error(run_cli("generate --model random:tiny --ids= --new 3"), 2,
                {"--ids: the id list is empty (example: --ids 5,9,3,7)"});
    check_error(run_cli("logits --model random:tiny --ids="), 2, {"--ids: the id list is empty"});
    check_error(run_cli("generate --model random:tiny --ids 1 --new 1000"), 2,
                {"--new: 1000 new tokens after a 1-token prompt need 1000 positions; random:tiny:0's context holds 64"});
}

TEST_CASE("bad input: unknown backend") {
    check_error(run_cli("generate --model random:tiny --ids 1 --new 1 --backend metal"), 2, {"--backend", "metal"});
    check_error(run_cli("bench --model random:tiny --prompt-len 2 --new 2 --backend tpu"), 2, {"--backend", "tpu"});
}

TEST_CASE("bad input: --backend cuda where there is no GPU") {
    const Run r = run_cli("generate --model random:tiny --ids 1,2 --new 2 --backend cuda --json");
    if (r.rc == 0) {
        MESSAGE("this build has a working CUDA backend and device: --backend cuda ran");
        CHECK(json::parse(r.out)["steps"].size() == 2);
    } else {
        check_error(r, 1, {"kvscope-cli: --backend cuda: "});
    }
}

TEST_CASE("bad input: other model specs and argument mistakes") {
    check_error(run_cli("generate --model random:huge --ids 1 --new 1"), 1,
                {"model 'random:huge': unknown random shape 'huge'"});
    check_error(run_cli("generate --model random:tiny:abc --ids 1 --new 1"), 1,
                {"model 'random:tiny:abc': seed 'abc' is not a non-negative integer"});
    check_error(run_cli("generate --model random:tiny --prompt hello --new 1"), 2,
                {"--prompt: model 'random:tiny:0' has no tokenizer (random models take --ids 1,2,3)"});
    check_error(run_cli("generate --model random:tiny --prompt hello --ids 1 --new 1"), 2,
                {"give exactly one of --prompt TEXT or --ids 1,2,3"});
    check_error(run_cli("generate --model random:tiny --new 1"), 2, {"give exactly one of --prompt TEXT or --ids 1,2,3"});
    check_error(run_cli("frobnicate"), 2, {"'frobnicate' is not a command"});
    check_error(run_cli("generate --model random:tiny --ids 1 --new 1 --temperature -1"), 2,
                {"--temperature: must be >= 0"});
    check_error(run_cli("generate --model random:tiny --ids 1 --new 1 --bogus"), 2, {"--bogus"});
}

TEST_CASE("bad input: cache policy flags on every command that takes them") {
    const std::string cmds[] = {"generate --model random:tiny --ids 1,2 --new 2", "compare --model random:tiny --ids 1,2 --new 2",
                                "logits --model random:tiny --ids 1,2", "bench --model random:tiny --prompt-len 2 --new 2"};
    for (const std::string& cmd : cmds) {
        CAPTURE(cmd);
        check_error(run_cli(cmd + " --window -1"), 2, {"kvscope-cli: --window: -1 is negative (0 = unlimited)"});
        check_error(run_cli(cmd + " --sinks -2"), 2, {"kvscope-cli: --sinks: -2 is negative"});
        check_error(run_cli(cmd + " --window 2 --sinks 3"), 2, {"kvscope-cli: --sinks: 3 exceeds --window 2"});
        check_error(run_cli(cmd + " --kv-dtype f8"), 2,
                    {"kvscope-cli: --kv-dtype: 'f8' is not a cache dtype (use f32, f16 or int8)"});
        check_error(run_cli(cmd + " --window abc"), 2, {"--window", "abc"});
    }
}

TEST_CASE("bad input: a cache policy the cuda backend does not implement") {
    const Run r = run_cli("generate --model random:tiny --ids 1,2 --new 2 --backend cuda --window 4");
    if (r.err.find("cuda backend: cache policy") != std::string::npos)
        check_error(r, 1, {"kvscope-cli: cuda backend: cache policy 'window 4, f32' is not implemented"});
    else
        check_error(r, 1, {"kvscope-cli: --backend cuda: "});  // no CUDA here: refused before the policy
}

TEST_CASE("bad input: speculative decoding (--draft)") {
    ModelDir m;
    SUBCASE("vocabularies differ") {
        ModelDir d;
        // Same size, two words swapped: the ids would mean different words.
        std::string v = read_bytes(d.file("vocab.txt"));
        const auto cat = v.find("\ncat\n");
        REQUIRE(cat != std::string::npos);
        v.replace(cat, 9, "\nsat\ncat\n");
        write_bytes(d.file("vocab.txt"), v);
        check_error(run_cli("generate " + m.model_arg() + " --draft '" + d.dir.string() + "' --ids 1,2 --new 2"), 1,
                    {"--draft: vocabularies differ: draft " + d.dir.string() + " and target " + m.dir.string(),
                     "token 2 'sat' and 'cat'"});
        check_error(run_cli("generate " + m.model_arg() + " --draft random:tiny --ids 1,2 --new 2"), 1,
                    {"--draft: vocabularies differ: draft random:tiny:0 and target " + m.dir.string(),
                     "96 and 16 tokens"});
    }
    SUBCASE("--draft-k out of range") {
        for (const std::string k : {"0", "17", "-1"}) {
            CAPTURE(k);
            check_error(run_cli("generate " + m.model_arg() + " --draft '" + m.dir.string() + "' --draft-k " + k +
                                " --ids 1,2 --new 2"),
                        2, {"--draft-k: " + k + " is out of range (1..16)"});
        }
        check_error(run_cli("generate " + m.model_arg() + " --draft-k 2 --ids 1,2 --new 2"), 2,
                    {"--draft-k: needs --draft SPEC"});
    }
    SUBCASE("a random draft without --ids") {
        check_error(run_cli("generate " + m.model_arg() + " --draft random:tiny --prompt 'the cat' --new 2"), 2,
                    {"--draft: model 'random:tiny:0' has no tokenizer", "a random draft takes --ids 1,2,3"});
    }
    SUBCASE("a draft with a smaller context than the run needs") {
        ModelDir d;
        d.cfg.n_ctx = 4;
        kv::WordTokenizer tok(kWords);
        kv::save_model_folder(d.dir.string(), d.cfg, kv::random_weights(d.cfg, 7), &tok);
        check_error(run_cli("generate " + m.model_arg() + " --draft '" + d.dir.string() + "' --ids 1,2,3 --new 4"), 2,
                    {"--draft: " + d.dir.string() + "'s context holds 4 positions, but the prompt and --new need 6"});
    }
    SUBCASE("--draft with --no-cache") {
        check_error(run_cli("generate " + m.model_arg() + " --draft '" + m.dir.string() + "' --no-cache --ids 1 --new 2"),
                    2, {"--draft: speculative decoding needs the cache (drop --no-cache)"});
    }
    SUBCASE("--draft with a cache policy or a weights type: refused, not ignored") {
        for (const std::string opt : {"--window 4", "--kv-dtype int8", "--weights f16"}) {
            CAPTURE(opt);
            const std::string name = opt.substr(0, opt.find(' '));
            const std::string msg = "--draft: speculative decoding runs the full f32 cache and the weights as stored; " +
                                    name + " is not supported with it (drop " + name + ")";
            check_error(run_cli("generate " + m.model_arg() + " --draft '" + m.dir.string() + "' " + opt +
                                " --ids 1 --new 2"),
                        2, {msg});
            check_error(run_cli("bench " + m.model_arg() + " --draft '" + m.dir.string() + "' " + opt + " --new 2"), 2,
                        {msg});
        }
    }
}
