// One batch of work at a time on its own std::thread. The thread owns what the job
// touches until finished() turns true; join() then hands it back to the caller.
#pragma once
#include <atomic>
#include <functional>
#include <thread>
#include <utility>

#include "ui/runtime/spawn.h"

namespace kvui {

class BatchWorker {
public:
    BatchWorker() = default;
    ~BatchWorker() { join(); }
    BatchWorker(const BatchWorker&) = delete;
    BatchWorker& operator=(const BatchWorker&) = delete;

    // Starts job on a new thread (after joining a previous one).
    void start(std::function<void()> job) {
        join();
        running_ = true;
        done_ = false;
        thread_ = spawn([this, job = std::move(job)] {
            job();
            done_ = true;
        });
    }
    bool running() const { return running_; }               // started, result not yet taken
    bool finished() const { return running_ && done_; }     // the job has returned
    void join() {
        if (thread_.joinable()) thread_.join();
    }
    // Joins and marks the result taken (or dropped).
    void take() {
        join();
        running_ = false;
        done_ = false;
    }

private:
    std::thread thread_;
    std::atomic<bool> running_{false};
    std::atomic<bool> done_{false};
};

}  // namespace kvui
