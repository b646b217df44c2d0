// Model folders in the Hugging Face GPT-2 layout: config.json + model.safetensors
// (+ vocab.txt, or vocab.json + merges.txt). Reading checks the header, dtypes,
// shapes and sizes and names the file and tensor in every error.
#pragma once
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/model/config.h"
#include "core/text/tokenizer.h"
#include "core/model/weights.h"

namespace kv {

// config.json <-> ModelConfig (GPT-2 keys; n_kv_head optional, defaults to n_head).
ModelConfig read_config_json(const std::string& path);
// torch_dtype names `held`, the type model.safetensors holds the matrices in.
void write_config_json(const std::string& path, const ModelConfig& cfg, WeightType held = WeightType::f32);
// The config.json text of a Llama-family cfg as transformers 4.x writes it (rope_theta,
// rope_scaling; 5.x reads it too), which parse_llama_config reads back to cfg:
// model_type "qwen2" for q/k/v biases without an o_proj bias, "mistral" for a sliding
// window, else "llama" (attention_bias for biases on all four); bos/eos token ids when
// not negative. Throws kv::Error naming `path` for what no transformers class holds.
std::string llama_config_json(const std::string& path, const ModelConfig& cfg, WeightType held = WeightType::f32,
                              int bos_token_id = -1, int eos_token_id = -1);

// How far a load has come: tensors and bytes (as stored in model.safetensors) read.
struct LoadProgress {
    int tensors_done = 0, tensors_total = 0;
    int64_t bytes_done = 0, bytes_total = 0;
};
// Hooks for a load off the UI thread. on_progress runs on the loading thread after
// each tensor (and once at 0 before the first); `cancel` is read between tensors: when
// it turns true the load throws LoadCancelled and returns nothing (what was read is freed).
struct LoadHooks {
    std::function<void(const LoadProgress&)> on_progress;
    const std::atomic<bool>* cancel = nullptr;
};
// Thrown when LoadHooks::cancel stopped a load: "model 'SPEC': loading cancelled".
struct LoadCancelled : Error {
    using Error::Error;
};

// One tensor as found in a safetensors header.
struct TensorInfo {
    std::string dtype;            // "F32", "F16", "BF16", ...
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;  // byte offsets in the data section
};

// The parsed header of a safetensors file (names as stored).
std::map<std::string, TensorInfo> read_safetensors_header(const std::string& path);

// Reads model.safetensors into weights shaped by cfg (GPT-2 names, optional
// "transformer." prefix, optional lm_head.weight; sets cfg.tied_head accordingly).
// The matrices are held in `want`; without it, as stored (F16 or BF16 when every
// matrix is stored so, else f32). Matrices already stored in the held 16-bit type
// are not copied: they are views into the mapped file.
Weights read_safetensors(const std::string& path, ModelConfig& cfg, std::optional<WeightType> want = std::nullopt,
                         const LoadHooks* hooks = nullptr);
// Writes GPT-2 names (lm_head.weight only when untied); the matrices in their held
// type (F32, F16 or BF16), vectors and wpe in F32.
void write_safetensors(const std::string& path, const ModelConfig& cfg, const Weights& w);

// A loaded model: shape, weights, and a tokenizer when the folder has one.
struct Model {
    std::string name;   // folder name or "random:tiny:SEED"
    std::string path;   // folder, empty for random models
    ModelConfig config;
    Weights weights;
    std::unique_ptr<Tokenizer> tokenizer;  // null for random models
};

// SPEC: a model folder, or random:tiny / random:gpt2-124m / random:gpt2-355m with optional :SEED.
// `weights`: the type to hold the matrices in; none = as stored (random models: f32).
// `hooks`: progress and cancellation (random models report their tensors made, all at
// once, and are cancelled only before and after making them).
std::unique_ptr<Model> load_model(const std::string& spec, std::optional<WeightType> weights = std::nullopt,
                                  const LoadHooks* hooks = nullptr);
std::unique_ptr<Model> load_model_folder(const std::string& dir, std::optional<WeightType> weights = std::nullopt,
                                         const LoadHooks* hooks = nullptr);
// A model's name and tokenizer without its weights (for commands that only tokenize):
// reads config.json (for the vocabulary check) and the tokenizer files, never
// model.safetensors. Random models and folders without tokenizer files: null tokenizer.
struct ModelText {
    std::string name, path;
    std::unique_ptr<Tokenizer> tokenizer;
};
ModelText load_model_text(const std::string& spec);
std::unique_ptr<Model> make_random_model(const ModelConfig& cfg, uint64_t seed, const std::string& name,
                                         const std::function<void(int)>& part_done = {});
// Writes config.json and model.safetensors, matrices in their held type (and
// vocab.txt when tok is a WordTokenizer).
void save_model_folder(const std::string& dir, const ModelConfig& cfg, const Weights& w,
                       const Tokenizer* tok);

// The bundled tiny model's folder: next to the executable (../share/kvscope/... for
// an install, or the build tree's copy), else the source tree. Empty if not found.
std::string default_model_dir();

}  // namespace kv
