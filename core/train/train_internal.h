// Internals shared by the trainer's files, not part of its interface (train.h): the
// Eigen views the kernels put over the flat row-major buffers, where each tensor sits
// in param_layout() (train_params.cpp), and GptTrainer::Acts, the activations a
// forward pass (train_forward.cpp) saves for the backward pass (train_backward.cpp),
// with the backward pass's scratch. Notation (train.h): B batch rows, T sequence
// length, C n_embd, V vocab, L layers, H heads, Q = C + 2*kv_dim, N = B*T.
#pragma once
#include <vector>

#include <Eigen/Core>

#include "core/train/train.h"

namespace kv {

namespace train_detail {

template <class R>
using Mat = Eigen::Matrix<R, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class R>
using MatMap = Eigen::Map<Mat<R>>;
template <class R>
using CMatMap = Eigen::Map<const Mat<R>>;
template <class R>
using RowVecMap = Eigen::Map<Eigen::Matrix<R, 1, Eigen::Dynamic>>;
template <class R>
using CRowVecMap = Eigen::Map<const Eigen::Matrix<R, 1, Eigen::Dynamic>>;

// Index of a tensor inside param_layout(): 2 + 12*layer + one of these.
enum LayerTensor { LN1W, LN1B, ATTW, ATTB, APW, APB, LN2W, LN2B, FCW, FCB, MPW, MPB, kPerLayer };
constexpr int kWte = 0, kWpe = 1;
inline int layer_index(int l, int which) { return 2 + kPerLayer * l + which; }
inline int lnf_index(int L) { return 2 + kPerLayer * L; }

}  // namespace train_detail

template <class R>
struct GptTrainer<R>::Acts {
    struct Layer {
        TrainBuf<R> ln1, ln1_mean, ln1_rstd;  // (N, C), (N), (N)
        TrainBuf<R> qkv;                      // (N, Q)
        TrainBuf<R> att;                      // (B, H, T, T)
        TrainBuf<R> atty;                     // (N, C)
        TrainBuf<R> res2;                     // (N, C) residual after attention
        TrainBuf<R> ln2, ln2_mean, ln2_rstd;  // (N, C), (N), (N)
        TrainBuf<R> fch, fch_gelu;            // (N, 4C)
        TrainBuf<R> res3;                     // (N, C) residual after the MLP
    };
    TrainBuf<R> encoded;                  // (N, C)
    std::vector<Layer> layers;               // L
    TrainBuf<R> lnf, lnf_mean, lnf_rstd;  // (N, C), (N), (N)
    TrainBuf<R> logits, probs;            // (N, V)
    TrainBuf<R> losses;                   // (N)
    std::vector<int> inputs, targets;        // (N)
    int b = 0, t = 0;
    bool has_targets = false;
    // Backward scratch.
    TrainBuf<R> dres, dln, dqkv, datty, dgelu, dfch, dlogits, datt_row;
};

}  // namespace kv
