// LoadView: what the window shows of a model loading off the UI thread (the
// progress bar, the caption). ModelLoader (ui/runtime/model_loader.h) fills copies of
// it; the panels read AppState::loading and never see the loader's thread.
#pragma once
#include <optional>
#include <string>

#include "core/model/model_io.h"

namespace kvui {

// What the progress bar draws (a copy, safe from any thread).
struct LoadView {
    bool running = false;       // started and not yet taken
    std::string spec;           // what is loading
    std::optional<kv::WeightType> weights;  // the type asked for (none: as stored)
    kv::LoadProgress progress;
    bool twin = false;          // now loading the f32 copy that vs_f32 compares with
    double seconds = 0.0;
    bool cancelling = false;    // cancel asked, the thread not yet stopped
};

}  // namespace kvui
