// llama.cpp (through LLamaSharp 0.30.0 and its CPU backend) as the peer engine of `hub bench --peer llamacpp` and of
// the GGUF correctness tests: load a GGUF, run a prompt, read logits, time prefill and greedy decode.
using System.Diagnostics;
using LLama;
using LLama.Common;
using LLama.Native;

namespace Hub.Benchmarks.Peers;

/// <summary>Timings of one llama.cpp round (seconds).</summary>
/// <param name="PrefillSeconds">Prompt evaluation up to the first token's logits.</param>
/// <param name="DecodeSeconds">All decode steps.</param>
/// <param name="Tokens">Greedy tokens produced (first from the prompt, then one per step).</param>
public sealed record PeerRound(double PrefillSeconds, double DecodeSeconds, int[] Tokens);

/// <summary>A GGUF model loaded in llama.cpp with one context of fixed size and thread count.</summary>
public sealed class LlamaCppPeer : IDisposable
{
    private static int _logSilenced;
    private readonly LLamaWeights _weights;
    private readonly LLamaContext _context;
    private readonly LLamaBatch _batch = new();

    /// <summary>Vocabulary size (logits per position).</summary>
    public int VocabSize { get; }

    /// <summary>The native library llama.cpp was loaded from (which AVX variant was picked).</summary>
    public static string? NativeLibraryPath { get; private set; }

    private LlamaCppPeer(LLamaWeights weights, LLamaContext context)
    {
        _weights = weights; _context = context;
        VocabSize = weights.Vocab.Count;
    }

    /// <summary>
    /// Loads <paramref name="ggufPath"/> with <paramref name="threads"/> threads for both prompt and generation and a
    /// context of <paramref name="contextSize"/> positions; prompts up to <paramref name="batchSize"/> tokens run as one batch.
    /// <paramref name="f32Cache"/> keeps attention in f32 as Hub does: f32 KV cache (llama.cpp's default is f16) and no
    /// flash attention (its CPU kernel rounds Q to f16). Benchmarks keep llama.cpp's defaults.
    /// </summary>
    public static LlamaCppPeer Load(string ggufPath, int threads, int contextSize, int batchSize = 512, bool f32Cache = false)
    {
        if (!File.Exists(ggufPath)) throw new FileNotFoundException($"GGUF file not found: {ggufPath}", ggufPath);
        if (Interlocked.Exchange(ref _logSilenced, 1) == 0)
        {
            // llama.cpp logs every tensor at load; keep only errors.
            NativeLibraryConfig.All.WithLogCallback((level, message) =>
            {
                if (level == LLamaLogLevel.Error) Console.Error.Write($"llama.cpp: {message}");
            });
        }
        var p = new ModelParams(ggufPath)
        {
            ContextSize = (uint)contextSize,
            Threads = threads,
            BatchThreads = threads,
            BatchSize = (uint)batchSize,
            UBatchSize = (uint)batchSize,
            GpuLayerCount = 0,
        };
        if (f32Cache) { p.TypeK = GGMLType.GGML_TYPE_F32; p.TypeV = GGMLType.GGML_TYPE_F32; p.FlashAttention = false; }
        var weights = LLamaWeights.LoadFromFile(p);
        try
        {
            var ctx = weights.CreateContext(p);
            NativeLibraryPath ??= NativeLibraryConfig.LLama.LibraryHasLoaded ? DescribeLoaded() : null;
            return new LlamaCppPeer(weights, ctx);
        }
        catch { weights.Dispose(); throw; }
    }

    private static string? DescribeLoaded()
    {
        try
        {
            var maps = File.ReadAllLines("/proc/self/maps");
            return maps.Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).LastOrDefault())
                .FirstOrDefault(f => f is not null && f.EndsWith("libggml-cpu.so", StringComparison.Ordinal));
        }
        catch (IOException) { return null; }
        catch (UnauthorizedAccessException) { return null; }
    }

    /// <summary>Clears the KV cache.</summary>
    public void Reset() => _context.NativeHandle.MemoryClear(true);

    /// <summary>Runs <paramref name="ids"/> from position 0 and returns the logits of every position ([T][V]).</summary>
    public float[][] Logits(ReadOnlySpan<int> ids)
    {
        Reset();
        _batch.Clear();
        for (int i = 0; i < ids.Length; i++) _batch.Add(ids[i], i, LLamaSeqId.Zero, true);
        Decode();
        var rows = new float[ids.Length][];
        for (int i = 0; i < ids.Length; i++) rows[i] = _context.NativeHandle.GetLogitsIth(i).ToArray();
        return rows;
    }

    /// <summary>
    /// One timed round from an empty cache: the prompt as one batch (the first greedy token comes from its last logits),
    /// then <paramref name="newTokens"/> single-token decode steps, each feeding back the greedy token.
    /// </summary>
    public PeerRound Run(ReadOnlySpan<int> prompt, int newTokens)
    {
        Reset();
        var tokens = new int[newTokens + 1];
        var t0 = Stopwatch.GetTimestamp();
        _batch.Clear();
        for (int i = 0; i < prompt.Length; i++) _batch.Add(prompt[i], i, LLamaSeqId.Zero, i == prompt.Length - 1);
        Decode();
        tokens[0] = ArgMax(_context.NativeHandle.GetLogitsIth(_batch.TokenCount - 1));
        var t1 = Stopwatch.GetTimestamp();
        for (int s = 0; s < newTokens; s++)
        {
            _batch.Clear();
            _batch.Add(tokens[s], prompt.Length + s, LLamaSeqId.Zero, true);
            Decode();
            tokens[s + 1] = ArgMax(_context.NativeHandle.GetLogitsIth(0));
        }
        var t2 = Stopwatch.GetTimestamp();
        return new PeerRound((t1 - t0) / (double)Stopwatch.Frequency, (t2 - t1) / (double)Stopwatch.Frequency, tokens);
    }

    private void Decode()
    {
        var r = _context.NativeHandle.Decode(_batch);
        if (r != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {r}");
    }

    private static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++) if (row[i] > row[best]) best = i;
        return best;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _context.Dispose();
        _weights.Dispose();
    }
}
