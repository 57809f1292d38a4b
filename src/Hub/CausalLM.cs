using Hub.Generation;
using Hub.Generation.Chat;
using Hub.Runtime;
using Hub.Tokenization;

namespace Hub;

/// <summary>
/// A causal language model on the stateful runtime: the KV cache lives in the runtime's states and is appended in
/// place, so a decode step feeds one token per row and the LM head runs on the last position only.
/// </summary>
public sealed class CausalLM : Model, ITopKLogitsRunner
{
    private InferRequest _request;
    private int _batch;
    private int[] _leftPad = [];
    private int[] _ids = [];
    private int[] _positions = [];
    private float[] _mask = [];
    private readonly int[] _keep = [1];
    // A cached shape: a params-span call with constant arguments allocates on every call (measured: 72 bytes).
    private static readonly int[] ShapeOne = [1];
    private readonly int _vocab;
    private readonly bool _glm1Positions;
    // ChatGLM-6B exports made before left-padded batches were supported have no padding mask input.
    private readonly bool _glm1Mask;
    private readonly Hub.Models.ChatGlm.ChatGlm1SpecialTokens _glm1Tokens;
    private Hub.Models.ChatGlm.ChatGlm1Layout[] _glm1Layouts = [];
    private int[] _prefix = [];

    internal CausalLM(LoadedModel loaded) : base(loaded)
    {
        _request = loaded.Compiled.CreateInferRequest();
        _vocab = (int?)loaded.Ir.Graph.Metadata["vocab_size"] ?? throw new UnsupportedModelException($"{loaded.Directory}: graph metadata lacks vocab_size; re-export the model");
        _glm1Positions = (string?)loaded.Ir.Graph.Metadata["positions"] == "chatglm1";
        if (_glm1Positions) _glm1Tokens = Hub.Models.ChatGlm.ChatGlm1SpecialTokens.FromMetadata(loaded.Ir.Graph.Metadata);
        _glm1Mask = _glm1Positions && loaded.Ir.Graph.Inputs.Any(i => i.Name == Hub.Models.ChatGlm.ChatGlm1Graph.AttentionMaskInput);
        _generationConfig = DefaultGenerationConfig(loaded);
        GenerationGate = new GenerationGate(loaded.Directory);
    }

    /// <summary>Loads a causal LM (see <see cref="Model.FromPretrained"/>).</summary>
    public static new CausalLM FromPretrained(string idOrPath, bool export = false, ModelOptions? options = null)
    {
        var model = Model.FromPretrained(idOrPath, export, options);
        if (model is CausalLM lm) return lm;
        var kind = model.GetType().Name;
        model.Dispose();
        throw new UnsupportedModelException($"{idOrPath} is a {kind}, not a causal language model; load it with Model.FromPretrained or {kind}.FromPretrained");
    }

    /// <summary>Defaults from the repo's generation_config.json, config.json and tokenizer (eos ids merged).</summary>
    /// <remarks>
    /// The tokenizer's end ids are merged on first access, from the model's one <see cref="Model.Tokenizer"/>: a caller
    /// that feeds token ids to <see cref="Forward"/> never loads the tokenizer (~15 MiB of resident memory for a
    /// 32k-vocabulary model, most of it load-time garbage), and one that generates text loads it once, not twice.
    /// </remarks>
    public GenerationConfig GenerationConfig
    {
        get
        {
            if (!Volatile.Read(ref _tokenizerEosMerged))
                lock (_eosLock)
                {
                    if (!_tokenizerEosMerged)
                    {
                        MergeTokenizerEos(_generationConfig);
                        Volatile.Write(ref _tokenizerEosMerged, true);
                    }
                }
            return _generationConfig;
        }
    }

    private readonly GenerationConfig _generationConfig;
    private bool _tokenizerEosMerged;
    private readonly Lock _eosLock = new();

    /// <inheritdoc/>
    public int VocabSize => _vocab;

    /// <inheritdoc/>
    public int MaxContext => Loaded.MaxContext;

    /// <inheritdoc/>
    public int Batch => _batch;

    /// <inheritdoc/>
    public int PastLength => _request.PastLength;

    /// <summary>
    /// The element type of this model's KV cache: <see cref="ModelOptions.KvCachePrecision"/> with Auto resolved (F16
    /// for compressed weights, F32 for F32 weights).
    /// </summary>
    public Hub.Runtime.KvCachePrecision KvCachePrecision => Loaded.Compiled.KvCachePrecision;

    /// <summary>
    /// Serializes generations on this model (its KV cache is single-use): <see cref="HubChatClient"/> takes it for every
    /// request, so concurrent callers wait their turn instead of corrupting each other's cache; a call from the flow that
    /// already holds it (its own streaming loop, an OnToken hook) throws <see cref="GenerationReentryException"/>.
    /// </summary>
    internal GenerationGate GenerationGate { get; }

    /// <summary>Counts <see cref="Forward"/> calls (for tests and benchmarks).</summary>
    public long ForwardCalls { get; private set; }

    /// <summary>Counts token positions fed through <see cref="Forward"/> (batch × new positions per call), to check
    /// that cached context is not fed again.</summary>
    public long ForwardPositions { get; private set; }

    /// <inheritdoc/>
    public ReadOnlySpan<float> Forward(ReadOnlySpan<int> tokens, int batch, int seqLen, ReadOnlySpan<int> leftPadding) =>
        RunCore(tokens, batch, seqLen, leftPadding, keepLast: 1);

    // One Infer call: ids, positions (linear or ChatGLM-6B's 2D), mask, and how many positions get logits (0 = all).
    private ReadOnlySpan<float> RunCore(ReadOnlySpan<int> tokens, int batch, int seqLen, ReadOnlySpan<int> leftPadding, int keepLast)
    {
        ObjectDisposedException.ThrowIf(_disposedFlag, this);
        if (batch <= 0 || seqLen <= 0 || tokens.Length != batch * seqLen)
            throw new ModelInputException($"expected {batch} × {seqLen} token ids, got {tokens.Length}");
        int past = _request.PastLength;
        if (past == 0)
        {
            EnsureBatchCapacity(batch);
            _batch = batch;
            if (_leftPad.Length != batch) _leftPad = new int[batch];
            if (leftPadding.IsEmpty) Array.Clear(_leftPad);
            else if (leftPadding.Length != batch) throw new ModelInputException($"leftPadding has {leftPadding.Length} entries for a batch of {batch}");
            else leftPadding.CopyTo(_leftPad);
            // Sized for the whole context up front, so decode steps never grow it.
            Grow(ref _mask, batch * MaxContext);
        }
        else if (batch != _batch)
            throw new ModelInputException($"the cache holds a batch of {_batch}; got {batch} rows (reset or reorder the cache first)");
        int total = past + seqLen;
        if (total > MaxContext)
            throw new ModelInputException($"{total} positions (cached {past} + new {seqLen}) exceed the context of {MaxContext}; shorten the prompt, lower max_new_tokens, or raise ModelOptions.MaxContext (model maximum {(int?)Graph.Metadata["max_position_embeddings"]})");
        foreach (var id in tokens)
            if ((uint)id >= (uint)_vocab) throw new ModelInputException($"token id {id} is outside the vocabulary [0, {_vocab})");

        Grow(ref _ids, batch * seqLen);
        tokens.CopyTo(_ids);
        if (_mask.Length < batch * total) { Grow(ref _mask, batch * total); _maskPositions = -1; } // a new array: rebuild
        if (batch == 1 && past > 0 && _maskPositions == past)
        {
            // One row: the mask of the cached positions is already in place (row stride = total), append the new ones.
            for (int j = past; j < total; j++) _mask[j] = j >= _leftPad[0] ? 1f : 0f;
        }
        else
            for (int b = 0; b < batch; b++)
                for (int j = 0; j < total; j++) _mask[b * total + j] = j >= _leftPad[b] ? 1f : 0f;
        _maskPositions = batch == 1 ? total : -1;

        if (_glm1Positions)
        {
            // ChatGLM-6B: 2D positions and a bidirectional prefix around [gMASK]/<sop>, each row laid out as if unpadded
            // (ChatGlm1Positions) with its left padding masked.
            if (past == 0 && !_glm1Mask && _leftPad.AsSpan().IndexOfAnyExcept(0) >= 0)
                throw new ModelInputException("this ChatGLM-6B (v1) export has no padding mask input: re-export the model (hub convert, or FromPretrained with export: true into a fresh cache) to run left-padded batches, or run prompts of different lengths one at a time");
            Grow(ref _positions, batch * 2 * seqLen);
            Grow(ref _prefix, batch);
            if (past == 0)
                _glm1Layouts = Hub.Models.ChatGlm.ChatGlm1Positions.ForPrompt(tokens, batch, seqLen, _leftPad, _glm1Tokens, _positions, _prefix);
            else
                Hub.Models.ChatGlm.ChatGlm1Positions.ForStep(_glm1Layouts, _leftPad, past, seqLen, _positions, _prefix);
            _request.SetInput("input_ids", _ids.AsSpan(0, batch * seqLen), batch, seqLen);
            _request.SetInput("position_ids", _positions.AsSpan(0, batch * 2 * seqLen), batch, 2, seqLen);
            _request.SetInput("prefix_length", _prefix.AsSpan(0, batch), batch);
            if (_glm1Mask) _request.SetInput("attention_mask", _mask.AsSpan(0, batch * total), batch, total);
        }
        else
        {
            Grow(ref _positions, batch * seqLen);
            for (int b = 0; b < batch; b++)
                for (int t = 0; t < seqLen; t++) _positions[b * seqLen + t] = Math.Max(0, past + t - _leftPad[b]);
            _request.SetInput("input_ids", _ids.AsSpan(0, batch * seqLen), batch, seqLen);
            _request.SetInput("position_ids", _positions.AsSpan(0, batch * seqLen), batch, seqLen);
            _request.SetInput("attention_mask", _mask.AsSpan(0, batch * total), batch, total);
        }
        _keep[0] = keepLast;
        _request.SetInput("logits_to_keep", _keep, ShapeOne);
        _request.Infer();
        ForwardCalls++;
        _cacheStamp++;
        ForwardPositions += (long)batch * seqLen;
        return _request.GetOutput("logits");
    }

    private long _cacheStamp;
    // Positions of a one-row mask already written to _mask by the previous call (-1: rebuild it).
    private int _maskPositions = -1;

    /// <inheritdoc/>
    public long CacheStamp => _cacheStamp;

    /// <inheritdoc/>
    public void Reset()
    {
        _cacheStamp++;
        _request.ResetState();
        _batch = 0;
    }

    /// <inheritdoc/>
    public void ReserveBatch(int rows)
    {
        ObjectDisposedException.ThrowIf(_disposedFlag, this);
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        if (rows <= Loaded.Compiled.Options.MaxBatch) return;
        if (_request.PastLength != 0)
            throw new InvalidOperationException($"ReserveBatch({rows}) needs an empty cache (it recompiles for the larger batch); call Reset first");
        EnsureBatchCapacity(rows);
    }

    /// <inheritdoc/>
    public void ReorderCache(ReadOnlySpan<int> rows)
    {
        if (rows.Length > Loaded.Compiled.Options.MaxBatch)
            throw new ModelInputException($"{rows.Length} rows exceed the runtime's batch capacity {Loaded.Compiled.Options.MaxBatch}; raise ModelOptions.MaxBatch");
        var pads = new int[rows.Length];
        // ChatGLM-6B's per-row layouts follow the rows too (beam search expands a prompt row into its beams).
        var layouts = _glm1Layouts.Length == _batch ? new Hub.Models.ChatGlm.ChatGlm1Layout[rows.Length] : _glm1Layouts;
        for (int i = 0; i < rows.Length; i++)
        {
            if ((uint)rows[i] >= (uint)_batch) throw new ArgumentOutOfRangeException(nameof(rows), $"row {rows[i]} outside the cached batch of {_batch}");
            pads[i] = _leftPad[rows[i]];
            if (layouts != _glm1Layouts) layouts[i] = _glm1Layouts[rows[i]];
        }
        _cacheStamp++;
        _maskPositions = -1;
        _request.ReorderState(rows);
        _leftPad = pads;
        _glm1Layouts = layouts;
        _batch = rows.Length;
    }

    /// <inheritdoc/>
    public void TruncateCache(int length)
    {
        _cacheStamp++;
        _request.TruncateState(length);
    }

    /// <summary>
    /// Logits of every position for one sequence of ids (a fresh cache): <c>[seq][vocab]</c>; the tool to compare
    /// with transformers (<c>hub logits</c>).
    /// </summary>
    public float[][] Logits(ReadOnlySpan<int> ids)
    {
        if (ids.IsEmpty) throw new ModelInputException("no token ids given");
        Reset();
        int n = ids.Length;
        var flat = RunCore(ids, 1, n, default, keepLast: 0);
        var result = new float[n][];
        for (int t = 0; t < n; t++) result[t] = flat.Slice(t * _vocab, _vocab).ToArray();
        Reset();
        return result;
    }

    /// <summary>Generates a continuation of <paramref name="prompt"/> and returns its text (prompt excluded).</summary>
    public string Generate(string prompt, GenerationConfig? config = null)
    {
        var tok = RequireTokenizer();
        var ids = Generate(tok.Encode(prompt), config);
        return tok.Decode(ids, skipSpecialTokens: true);
    }

    /// <summary>Generates from token ids; returns the new ids only.</summary>
    /// <exception cref="GenerationReentryException">Called from inside a generation running on this model (its streaming
    /// loop or an OnToken hook).</exception>
    public int[] Generate(int[] promptIds, GenerationConfig? config = null)
    {
        var cfg = GenerationConfig.Merge(config);
        using var gate = GenerationGate.Enter();
        var result = Generator.Generate(this, [promptIds], cfg, Hooks(cfg));
        return result.Sequences[0];
    }

    /// <summary>
    /// Streams the continuation of <paramref name="prompt"/> as text pieces that never split a character. The model is
    /// busy until the enumeration ends: generating on it from inside the loop throws <see cref="GenerationReentryException"/>.
    /// </summary>
    public IAsyncEnumerable<string> GenerateStreamAsync(string prompt, GenerationConfig? config = null, CancellationToken cancellationToken = default) =>
        GenerationGate.Stream(ct =>
        {
            var tok = RequireTokenizer();
            var cfg = GenerationConfig.Merge(config);
            return GenerationStreaming.GenerateStreamAsync(this, tok, tok.Encode(prompt), cfg, ct);
        }, cancellationToken);

    /// <summary>
    /// A chat engine over this model with <paramref name="format"/> or the one its tokenizer and config call for;
    /// <paramref name="user"/> names the caller in the error when the tokenizer files are missing.
    /// </summary>
    internal (ChatEngine Engine, IChatFormat Format) CreateChatEngine(IChatFormat? format, string user)
    {
        var tok = Tokenizer ?? throw new ModelFileNotFoundException(Directory, $"{user} needs the model's tokenizer files");
        format ??= ChatFormats.For(tok, ModelType);
        return (new ChatEngine(this, tok, format, GenerationConfig), format);
    }

    private GenerationHooks? Hooks(GenerationConfig cfg) =>
        Tokenizer is { } tok ? new GenerationHooks { Decode = ids => tok.Decode(ids, skipSpecialTokens: true) } : null;

    private void EnsureBatchCapacity(int batch)
    {
        if (batch <= Loaded.Compiled.Options.MaxBatch) return;
        // More rows than the runtime was compiled for: recompile once with the larger batch (the cache is empty here).
        Recompile(batch);
    }

    private void Recompile(int batch)
    {
        var compiled = CompiledModel.Compile(Loaded.Ir, LoadedModel.RuntimeOptionsFor(Loaded.Ir.Graph, Loaded.Options, batch));
        _request.Dispose();
        Loaded.Compiled.Dispose();
        Loaded.Compiled = compiled;
        _request = compiled.CreateInferRequest();
        _batch = 0;
        _cacheStamp++;
    }

    /// <summary>Name of the graph output holding the TopK values appended by <see cref="UseLogitsTopK"/>.</summary>
    public const string TopKValuesOutput = "logits_topk_values";

    /// <summary>Name of the graph output holding the TopK ids appended by <see cref="UseLogitsTopK"/>.</summary>
    public const string TopKIndicesOutput = "logits_topk_indices";

    private const string TopKNodeName = "logits_topk";

    /// <inheritdoc/>
    public int LogitsTopK { get; private set; }

    /// <inheritdoc/>
    public ReadOnlySpan<float> TopKValues => LogitsTopK > 0 ? _request.GetOutput(TopKValuesOutput) : default;

    /// <inheritdoc/>
    public ReadOnlySpan<int> TopKIndices => LogitsTopK > 0 ? _request.GetOutputInt(TopKIndicesOutput) : default;

    /// <summary>
    /// Appends (k &gt; 0) or removes (k = 0) a TopK(k) on the logits at the end of the graph, as OpenVINO's post-processing
    /// does, and recompiles (the KV cache is emptied). With it, greedy decoding and top-k sampling (top_k &lt; k, no
    /// penalties) read k candidates per step instead of the whole vocabulary row; other settings still read the row.
    /// The exported IR on disk is not changed. See docs/generation.md for when it pays.
    /// </summary>
    /// <exception cref="InvalidOperationException">A generation is running on this model (the recompile would pull the
    /// compiled graph from under it).</exception>
    public void UseLogitsTopK(int k)
    {
        ObjectDisposedException.ThrowIf(_disposedFlag, this);
        using var gate = GenerationGate.TryEnter()
            ?? throw new InvalidOperationException("UseLogitsTopK cannot change the graph while a generation is running on this model; call it between generations");
        UseLogitsTopKCore(k);
    }

    private void UseLogitsTopKCore(int k)
    {
        if (k < 0 || k > _vocab) throw new ArgumentOutOfRangeException(nameof(k), k, $"TopK candidates must be in [0, {_vocab}] (0 = off)");
        if (k == LogitsTopK) return;
        var g = Loaded.Ir.Graph;
        var logits = g.Outputs.FirstOrDefault(o => o.Name == "logits")
                     ?? throw new UnsupportedModelException($"{Directory}: the graph has no 'logits' output to append TopK to");
        var savedNodes = g.Nodes.ToList();
        var savedOutputs = g.Outputs.ToList();
        g.Nodes.RemoveAll(n => n.Name == TopKNodeName);
        g.Outputs.RemoveAll(o => o.Name is TopKValuesOutput or TopKIndicesOutput);
        if (k > 0)
        {
            var shape = logits.Shape.Take(logits.Shape.Count - 1).Append(new Hub.IR.Dim(k, null)).ToArray();
            g.Nodes.Add(new Hub.IR.Node
            {
                Name = TopKNodeName, Op = Hub.IR.Ops.TopK, Inputs = ["logits"], Outputs = [TopKValuesOutput, TopKIndicesOutput],
                Attributes = new System.Text.Json.Nodes.JsonObject { ["k"] = k },
            });
            g.Outputs.Add(new Hub.IR.ValueInfo(TopKValuesOutput, DType.F32, shape));
            g.Outputs.Add(new Hub.IR.ValueInfo(TopKIndicesOutput, DType.I32, shape));
        }
        try { Recompile(Loaded.Compiled.Options.MaxBatch); }
        catch
        {
            g.Nodes.Clear(); g.Nodes.AddRange(savedNodes);
            g.Outputs.Clear(); g.Outputs.AddRange(savedOutputs);
            throw;
        }
        LogitsTopK = k;
    }

    private static void Grow<T>(ref T[] buffer, int size)
    {
        if (buffer.Length < size) buffer = new T[Math.Max(size, buffer.Length * 2)];
    }

    private static GenerationConfig DefaultGenerationConfig(LoadedModel loaded)
    {
        var path = Path.Combine(loaded.Directory, "generation_config.json");
        var cfg = File.Exists(path) ? GenerationConfig.FromFile(path) : new GenerationConfig();
        // Stop on every end id the repo declares: generation_config.json, config.json and the tokenizer's eos and
        // end-of-turn tokens (stopping on the tokenizer's eos alone is the classic generation bug).
        var meta = loaded.Ir.Graph.Metadata["eos_token_id"];
        int[] fromConfig = meta switch
        {
            null => [],
            System.Text.Json.Nodes.JsonArray a => a.Select(x => (int)x!).ToArray(),
            var v => [(int)v],
        };
        var union = Generator.UnionIds(cfg.EosTokenId, fromConfig, null);
        if (union.Length > 0) cfg.EosTokenId = union;
        if (cfg.PadTokenId is null && (int?)loaded.Ir.Graph.Metadata["pad_token_id"] is int pad) cfg.PadTokenId = pad;
        return cfg;
    }

    // The tokenizer's eos and end-of-turn ids, added to the ids from generation_config.json and config.json; a folder
    // whose tokenizer cannot be read keeps those (the tokenizer's error surfaces where text is encoded).
    private void MergeTokenizerEos(GenerationConfig cfg)
    {
        HubTokenizer? tok = null;
        try { tok = Tokenizer; }
        catch (HubException) { }
        if (tok is null) return;
        var union = Generator.UnionIds(cfg.EosTokenId, tok.EosTokenIds);
        if (union.Length > 0) cfg.EosTokenId = union;
    }

    private bool _disposedFlag;

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        _disposedFlag = true;
        _request.Dispose();
    }
}
