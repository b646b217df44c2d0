// Times llama.cpp (through node-llama-cpp's prebuilt linux-x64 binary, from npm) on a
// GGUF: a prefill of PROMPT token ids, then NEW greedy decode steps, THREADS threads.
// Prints one JSON line: {"prefill_ms", "decode_tokens_per_s", "new_tokens", "threads",
// "llama_cpp"}. usage: node bench.mjs MODEL.gguf PROMPT NEW THREADS
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const [modelPath, promptLen, nNew, threads] = [process.argv[2], +process.argv[3], +process.argv[4], +process.argv[5]];
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath, gpuLayers: 0, useMmap: true});
const context = await model.createContext({contextSize: 512, batchSize: 512, threads});
const seq = context.getSequence();
const prompt = Array.from({length: promptLen}, (_, i) => 3 + ((i * 7919) % 40000));
let n = 0, tFirst = 0;
const t0 = performance.now();
for await (const token of seq.evaluate(prompt, {temperature: 0})) {
    if (n === 0) tFirst = performance.now();
    if (++n >= nNew) break;
}
const t1 = performance.now();
console.log(JSON.stringify({
    prefill_ms: tFirst - t0,
    decode_tokens_per_s: (n - 1) / ((t1 - tFirst) / 1000),
    new_tokens: n,
    threads,
    llama_cpp: llama.llamaCppRelease?.release ?? "unknown",
}));
await context.dispose();
await model.dispose();
