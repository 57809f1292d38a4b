// llama.cpp (through LLamaSharp 0.30.0 and its CPU backend) as the peer engine of `hub bench --peer llamacpp` and of
// the GGUF correctness tests: load a GGUF, run a prompt, read logits, time prefill and greedy decode.
using Hub.Generation;
using System.Diagnostics;
using LLama;
using LLama.Common;
using LLama.Exceptions;
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
    private static readonly object ConfigLock = new();
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
    /// <exception cref="ModelFileNotFoundException">The file does not exist.</exception>
    /// <exception cref="CheckpointFormatException">llama.cpp rejected the file (not a GGUF model it can load).</exception>
    /// <exception cref="LlamaCppUnavailableException">The llama.cpp native library could not be loaded, or no context could be created.</exception>
    public static LlamaCppPeer Load(string ggufPath, int threads, int contextSize, int batchSize = 512, bool f32Cache = false)
    {
        if (!File.Exists(ggufPath))
            throw new ModelFileNotFoundException(ggufPath, "the llama.cpp peer needs a GGUF file; write one with `hub convert <model> --to gguf`");
        LLamaWeights weights;
        try
        {
            // Configured once, under a lock every loader passes: a second loader must not load the native library
            // (which freezes the configuration) between the first one's check and its configuration call.
            lock (ConfigLock)
                if (_logSilenced == 0)
                {
                    // llama.cpp logs every tensor at load; keep only errors.
                    NativeLibraryConfig.All.WithLogCallback((level, message) =>
                    {
                        if (level == LLamaLogLevel.Error) Console.Error.Write($"llama.cpp: {message}");
                    });
                    _logSilenced = 1;
                }
            weights = LLamaWeights.LoadFromFile(Params(ggufPath, threads, contextSize, batchSize, f32Cache));
        }
        catch (Exception e) when (Translate(e, ggufPath) is { } typed) { throw typed; }
        try
        {
            var ctx = weights.CreateContext(Params(ggufPath, threads, contextSize, batchSize, f32Cache));
            NativeLibraryPath ??= NativeLibraryConfig.LLama.LibraryHasLoaded ? DescribeLoaded() : null;
            return new LlamaCppPeer(weights, ctx);
        }
        catch (Exception e)
        {
            weights.Dispose();
            if (e is RuntimeError)
                throw new LlamaCppUnavailableException(ggufPath,
                    $"llama.cpp could not create a context of {contextSize} positions ({e.Message}); lower the context size or the thread count, or free memory", e);
            throw;
        }
    }

    private static ModelParams Params(string ggufPath, int threads, int contextSize, int batchSize, bool f32Cache)
    {
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
        return p;
    }

    /// <summary>
    /// The typed Hub error for what LLamaSharp throws while loading <paramref name="ggufPath"/>, or null for an exception
    /// that is a bug rather than bad input or a broken install (it then propagates unchanged).
    /// </summary>
    internal static HubException? Translate(Exception e, string ggufPath) => e switch
    {
        LoadWeightsFailedException => new CheckpointFormatException(ggufPath, null,
            "llama.cpp could not load this GGUF (its log above says why: unknown architecture, missing tensor or key, truncated data); " +
            "check it with Hub's GgufReader and re-export it with `hub convert <model> --to gguf`", e),
        TypeInitializationException or DllNotFoundException or EntryPointNotFoundException or BadImageFormatException or RuntimeError =>
            new LlamaCppUnavailableException(ggufPath,
                $"the llama.cpp native library could not be loaded ({(e.InnerException ?? e).Message}); restore the LLamaSharp.Backend.Cpu " +
                "package (`dotnet restore`, it puts runtimes/<rid>/native/libllama.so next to the app) and install libstdc++ and libgomp; " +
                "Hub's own runtime does not need it", e),
        IOException or UnauthorizedAccessException => new LlamaCppUnavailableException(ggufPath,
            $"the file could not be read ({e.Message}); check that it exists and is readable", e),
        _ => null,
    };

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
        tokens[0] = LogitsProcessors.ArgMax(_context.NativeHandle.GetLogitsIth(_batch.TokenCount - 1));
        var t1 = Stopwatch.GetTimestamp();
        for (int s = 0; s < newTokens; s++)
        {
            _batch.Clear();
            _batch.Add(tokens[s], prompt.Length + s, LLamaSeqId.Zero, true);
            Decode();
            tokens[s + 1] = LogitsProcessors.ArgMax(_context.NativeHandle.GetLogitsIth(0));
        }
        var t2 = Stopwatch.GetTimestamp();
        return new PeerRound((t1 - t0) / (double)Stopwatch.Frequency, (t2 - t1) / (double)Stopwatch.Frequency, tokens);
    }

    private void Decode()
    {
        var r = _context.NativeHandle.Decode(_batch);
        if (r != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {r}");
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _context.Dispose();
        _weights.Dispose();
    }
}

/// <summary>
/// The llama.cpp peer could not start on a GGUF file: its native library is missing or broken, the file is unreadable,
/// or no context fits; the message names the file and the fix. Hub's own runtime is unaffected.
/// </summary>
public sealed class LlamaCppUnavailableException : HubException
{
    /// <summary>The GGUF file being loaded.</summary>
    public string FilePath { get; }

    /// <summary>Creates the exception; the message is prefixed with the file.</summary>
    public LlamaCppUnavailableException(string filePath, string message, Exception? inner = null)
        : base($"{filePath}: {message}", inner) => FilePath = filePath;
}
