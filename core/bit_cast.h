// kv::bit_cast: std::bit_cast, or the compiler's builtin where the standard library
// lacks it (libc++ 13 of the browser build, scripts/web). Same contract: To and From
// have the same size and are trivially copyable.
#pragma once
#include <bit>
#include <type_traits>

namespace kv {

#if defined(__cpp_lib_bit_cast)
using std::bit_cast;
#else
template <class To, class From>
constexpr To bit_cast(const From& from) noexcept {
    static_assert(sizeof(To) == sizeof(From) && std::is_trivially_copyable_v<To> && std::is_trivially_copyable_v<From>);
    return __builtin_bit_cast(To, from);
}
#endif

}  // namespace kv
