// ModelLoader: kv::load_model on a worker thread with progress and cancel.
#include "ui/runtime/model_loader.h"

#include <chrono>
#include <exception>

#include "ui/runtime/spawn.h"

namespace kvui {

void ModelLoader::start(const std::string& spec, std::optional<kv::WeightType> weights) {
    stop();
    cancel_ = false;
    done_ = false;
    {
        std::lock_guard<std::mutex> lock(mu_);
        view_ = LoadView{};
        view_.running = true;
        view_.spec = spec;
        view_.weights = weights;
    }
    view_running_ = true;
    thread_ = spawn([this, spec, weights] { work(spec, weights); });
}

void ModelLoader::join() {
    if (thread_.joinable()) thread_.join();
}

void ModelLoader::stop() {
    cancel_ = true;
    join();
    model_.reset();
    view_running_ = false;
    std::lock_guard<std::mutex> lock(mu_);
    view_ = LoadView{};
}

std::unique_ptr<kv::Model> ModelLoader::take(std::string& error, bool& cancelled) {
    join();
    if (cancel_ && !cancelled_) {  // cancelled after the last tensor: still nothing is published
        model_.reset();
        twin_.reset();
        cancelled_ = true;
        error_ = "model '" + snapshot().spec + "': loading cancelled";
    }
    error = error_;
    cancelled = cancelled_;
    view_running_ = false;
    done_ = false;
    {
        std::lock_guard<std::mutex> lock(mu_);
        view_ = LoadView{};
    }
    return std::move(model_);
}

LoadView ModelLoader::snapshot() const {
    std::lock_guard<std::mutex> lock(mu_);
    LoadView v = view_;
    v.cancelling = v.running && cancel_;
    return v;
}

void ModelLoader::work(std::string spec, std::optional<kv::WeightType> weights) {
    const auto t0 = std::chrono::steady_clock::now();
    auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    kv::LoadHooks hooks;
    hooks.cancel = &cancel_;
    hooks.on_progress = [&](const kv::LoadProgress& p) {
        {
            std::lock_guard<std::mutex> lock(mu_);
            view_.progress = p;
            view_.seconds = seconds();
        }
        if (observer_) observer_(p);
    };
    model_.reset();
    twin_.reset();
    error_.clear();
    cancelled_ = false;
    try {
        model_ = kv::load_model(spec, weights, &hooks);
        if (model_->weights.type != kv::WeightType::f32 && 2 * model_->weights.bytes() <= kMaxTwinBytes) {
            {
                std::lock_guard<std::mutex> lock(mu_);
                view_.twin = true;
            }
            twin_ = kv::load_model(spec, kv::WeightType::f32, &hooks);
        }
    } catch (const kv::LoadCancelled& e) {
        model_.reset();  // cancelled while loading the twin: nothing either
        error_ = e.what();
        cancelled_ = true;
    } catch (const std::exception& e) {
        model_.reset();
        twin_.reset();
        error_ = e.what();
    }
    {
        std::lock_guard<std::mutex> lock(mu_);
        view_.seconds = seconds();
    }
    done_ = true;
}

}  // namespace kvui
