// Eigen aliases used everywhere in core/. Everything is row-major float, so a
// matrix's rows are contiguous: a KV cache row, a token's embedding, a Q row.
#pragma once
#include <Eigen/Core>

namespace kv {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using RowVec = Eigen::Matrix<float, 1, Eigen::Dynamic, Eigen::RowMajor>;
using Vec = Eigen::VectorXf;
using RowMatMap = Eigen::Map<RowMat>;
using ConstRowMatMap = Eigen::Map<const RowMat>;

}  // namespace kv
