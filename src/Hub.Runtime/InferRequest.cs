// One inference context: inputs, intermediate buffers, the KV-cache states and their length. Infer binds the
// dynamic dims from the inputs, re-infers every shape (no allocation), grows buffers only when a larger shape than
// ever seen arrives, and runs the plan; steady-state decode allocates no managed memory.
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Hub.IR;
using Hub.Runtime.Execution;

namespace Hub.Runtime;

/// <summary>Runs a <see cref="CompiledModel"/> with its own inputs, outputs and KV cache. Not thread-safe: one caller at a time.</summary>
public sealed unsafe class InferRequest : IDisposable
{
    private readonly OpExec[] _ops;

    /// <summary>The request's executors in node order (tests check which weight layout they bound).</summary>
    internal IReadOnlyList<OpExec> Executors => _ops;
    private readonly NativeBuffer[] _inputs;
    private readonly bool[] _inputSet;
    private readonly NativeBuffer[] _slots;
    private readonly long[] _slotNeed;
    private readonly NativeBuffer[] _states;
    private readonly NativeBuffer[] _scratch;
    private readonly NativeBuffer _reorderTmp = new();
    private readonly int[] _symbols;
    private readonly int[] _symbolSource;
    private readonly bool _probe;
    private OpExec? _stepOwner;
    private int _stepB, _stepT;
    private bool _hasRun;
    // Whether the last Infer dispatched a parallel job, and its first input's element count (see Infer's prewake).
    private bool _lastStepParallel = true;
    private long _lastStepTokens = -1;
    // Whether the values' pointers are bound to the slots' current buffers (AssignMemory rebinds after a growth).
    private bool _bound;
    private bool _disposed;

    internal CompiledModel Model { get; }
    /// <summary>When set (length = node count), Infer adds each node's Stopwatch ticks (profiling in tests/bench).</summary>
    internal long[]? OpTicks { get; set; }
    internal TensorRt[] T { get; }

    /// <summary>
    /// The decode attention kernel this request's Attention ops run (a per-request switch for in-process A/B runs;
    /// HUB_ATTENTION_ROW=PerKey|Interleaved|InterleavedPrefetch sets the default for end-to-end comparisons).
    /// </summary>
    internal Kernels.AttentionKernels.RowKernel AttentionRowKernel { get; set; } = DefaultRowKernel;

    private static readonly Kernels.AttentionKernels.RowKernel DefaultRowKernel =
        Enum.TryParse<Kernels.AttentionKernels.RowKernel>(Environment.GetEnvironmentVariable("HUB_ATTENTION_ROW"), true, out var k) ? k : default;

    /// <summary>Positions held in the states (all rows share it); advanced by each successful Infer of a stateful graph.</summary>
    public int PastLength { get; private set; }

    /// <summary>Rows of the KV cache in use (the batch of the last Infer, or the row count of the last ReorderState).</summary>
    public int StateBatch { get; private set; }

    /// <summary>
    /// Bytes of cached keys/values this request has copied since it was created (ReorderState's row moves, the only
    /// path that copies cache content). Decoding appends the new token's keys/values in place and never adds to it,
    /// which is what a stateful cache is for: compare it before and after decode steps.
    /// </summary>
    public long StateBytesCopied { get; private set; }

    /// <summary>
    /// Bytes of new keys/values written into the states by successful Infer calls (batch × kv_heads × new positions ×
    /// head_dim × 4 per state, or × 2 with an f16 cache: the Attention op's in-place append). Per decode step this is
    /// the new token only.
    /// </summary>
    public long StateBytesAppended { get; private set; }

    // Bytes one row's new position appends across all states (K and V of every layer), and the smallest state capacity.
    private readonly long _stateBytesPerRowPosition;
    private readonly int _stateCapacity;
    private readonly string _stateCapacityName = "";

    /// <summary>Times a state buffer was allocated (once per state at creation; growth would add to it).</summary>
    public int StateAllocations { get; private set; }

    /// <summary>The states' names, in graph order (past.{layer}.key/value for causal LMs).</summary>
    public IReadOnlyList<string> StateNames => Model.States.Select(s => s.Name).ToArray();

    /// <summary>
    /// The native address of state <paramref name="name"/>'s buffer: unchanged across Infer calls shows that the cache
    /// is neither moved nor reallocated while decoding.
    /// </summary>
    public nint GetStateAddress(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        for (int s = 0; s < Model.States.Length; s++)
            if (Model.States[s].Name == name) return _states[s].Ptr;
        throw new ArgumentException($"the model has no state '{name}'; its states are {string.Join(", ", Model.States.Select(x => $"'{x.Name}'"))}", nameof(name));
    }

    /// <summary>
    /// Opt-in per-op timing: when true, Infer accumulates each node's Stopwatch ticks (read them with
    /// <see cref="GetOpTimes"/>). Off by default, and then Infer pays only one null check.
    /// </summary>
    public bool ProfileOps
    {
        get => OpTicks is not null;
        set => OpTicks = value ? OpTicks ?? new long[_ops.Length] : null;
    }

    /// <summary>Zeroes the accumulated op times (keeps profiling on).</summary>
    public void ResetOpTimes()
    {
        if (OpTicks is { } t) Array.Clear(t);
    }

    /// <summary>
    /// Accumulated time per op kind (Linear, Attention, ...) since profiling was switched on or last reset; empty
    /// when <see cref="ProfileOps"/> is off.
    /// </summary>
    public IReadOnlyDictionary<string, TimeSpan> GetOpTimes()
    {
        var result = new Dictionary<string, TimeSpan>(StringComparer.Ordinal);
        if (OpTicks is not { } ticks) return result;
        var nodes = Model.Model.Graph.Nodes;
        for (int i = 0; i < ticks.Length; i++)
        {
            var span = TimeSpan.FromSeconds(ticks[i] / (double)System.Diagnostics.Stopwatch.Frequency);
            result[nodes[i].Op] = result.TryGetValue(nodes[i].Op, out var sum) ? sum + span : span;
        }
        return result;
    }

    internal InferRequest(CompiledModel model, bool probe)
    {
        Model = model; _probe = probe;
        // Per-Infer state bookkeeping is fixed by the graph: computed once here, not by a loop over the states per call.
        _stateCapacity = int.MaxValue;
        foreach (var st in model.States)
        {
            _stateBytesPerRowPosition += (long)st.KvHeads * st.HeadDim * model.StateElementBytes;
            if (st.Capacity < _stateCapacity) (_stateCapacity, _stateCapacityName) = (st.Capacity, st.Name);
        }
        var g = model.Model.Graph;
        T = new TensorRt[model.Values.Length];
        for (int i = 0; i < T.Length; i++)
        {
            T[i] = new TensorRt();
            if (model.Values[i].Weight is { } w)
            {
                var view = model.Model.GetWeight(w.Name);
                T[i].Ptr = view.Pointer;
                T[i].DType = w.DType;
                T[i].SetShape(w.Shape.ToIntArray());
            }
        }
        _inputs = g.Inputs.Select(_ => new NativeBuffer()).ToArray();
        _inputSet = new bool[g.Inputs.Count];
        _symbols = new int[model.SymbolNames.Count];
        _symbolSource = new int[model.SymbolNames.Count];
        try
        {
            _ops = g.Nodes.Select(CreateOp).ToArray();
        }
        catch (Exception e) when (e is InvalidOperationException or IrFormatException)
        {
            foreach (var b in _inputs) b.Dispose();
            if (e is IrFormatException) throw;
            throw new IrFormatException(model.GraphFile, e.Message, e);
        }
        _slots = Enumerable.Range(0, model.SlotCount).Select(_ => new NativeBuffer()).ToArray();
        _slotNeed = new long[model.SlotCount];
        _states = model.States.Select(_ => new NativeBuffer()).ToArray();
        if (!probe)
            for (int s = 0; s < _states.Length; s++)
            {
                _states[s].Ensure(model.States[s].Batch * model.States[s].RowFloats * model.StateElementBytes);
                StateAllocations++;
            }
        long scratch = 0;
        foreach (var op in _ops) scratch = Math.Max(scratch, op.ScratchFloats);
        _scratch = Enumerable.Range(0, model.Pool.Size).Select(_ => new NativeBuffer()).ToArray();
        _kvWiden = Enumerable.Range(0, model.Pool.Size).Select(_ => new NativeBuffer()).ToArray();
        if (!probe) foreach (var s in _scratch) s.Ensure(Math.Max(64, scratch * 4));
    }

    private OpExec CreateOp(Node n) => n.Op switch
    {
        Ops.Embedding => new EmbeddingExec(n, this),
        Ops.Linear => IsQuantizedWeight(n, 1) ? new QuantLinearExec(n, this) : new LinearExec(n, this),
        Ops.MatMul => new MatMulExec(n, this),
        Ops.LayerNorm => new NormExec(n, this, rms: false),
        Ops.RMSNorm => new NormExec(n, this, rms: true),
        Ops.Add => new BinaryExec(n, this, mul: false),
        Ops.Mul => new BinaryExec(n, this, mul: true),
        Ops.Scale => new UnaryExec(n, this, UnaryKind.Scale),
        Ops.Gelu => new UnaryExec(n, this, UnaryKind.GeluErf),
        Ops.Silu => new UnaryExec(n, this, UnaryKind.Silu),
        Ops.Relu => new UnaryExec(n, this, UnaryKind.Relu),
        Ops.Tanh => new UnaryExec(n, this, UnaryKind.Tanh),
        Ops.Sigmoid => new UnaryExec(n, this, UnaryKind.Sigmoid),
        Ops.SwiGlu => new SwiGluExec(n, this),
        Ops.Rope => new RopeExec(n, this),
        Ops.Attention => new AttentionExec(n, this),
        Ops.Softmax => new SoftmaxExec(n, this),
        Ops.TopK => new TopKExec(n, this),
        Ops.Slice => new SliceExec(n, this),
        Ops.KeepLast => new KeepLastExec(n, this),
        Ops.Split => new SplitExec(n, this),
        Ops.Concat => new ConcatExec(n, this),
        Ops.GatherRows => new GatherRowsExec(n, this),
        _ => throw new UnsupportedModelException($"node '{n.Name}' uses op '{n.Op}', which the CPU runtime does not implement yet"),
    };

    private bool IsQuantizedWeight(Node n, int input) =>
        n.Inputs.Count > input && Model.Values[Model.ValueId(n.Inputs[input])] is { Weight.Quant: not null };

    /// <summary>Sets an I32 input (token ids, positions, prefix lengths); the data is copied.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void SetInput(string name, ReadOnlySpan<int> data, int[] shape) =>
        SetInputCore(name, DType.I32, MemoryMarshal.AsBytes(data), data.Length, shape ?? throw new ArgumentNullException(nameof(shape)));

    /// <summary>Sets an F32 input (attention mask, features); the data is copied.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void SetInput(string name, ReadOnlySpan<float> data, int[] shape) =>
        SetInputCore(name, DType.F32, MemoryMarshal.AsBytes(data), data.Length, shape ?? throw new ArgumentNullException(nameof(shape)));

    /// <summary>Sets an I32 input without allocating for the shape (<c>SetInput("input_ids", ids, 1, 1)</c> binds here).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void SetInput(string name, ReadOnlySpan<int> data, params ReadOnlySpan<int> shape) =>
        SetInputCore(name, DType.I32, MemoryMarshal.AsBytes(data), data.Length, shape);

    /// <summary>Sets an F32 input without allocating for the shape.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void SetInput(string name, ReadOnlySpan<float> data, params ReadOnlySpan<int> shape) =>
        SetInputCore(name, DType.F32, MemoryMarshal.AsBytes(data), data.Length, shape);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void SetInputCore(string name, DType dtype, ReadOnlySpan<byte> bytes, int count, ReadOnlySpan<int> shape)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var g = Model.Model.Graph;
        int ix = -1;
        for (int i = 0; i < g.Inputs.Count; i++) if (g.Inputs[i].Name == name) { ix = i; break; }
        if (ix < 0) throw new ModelInputException($"the model has no input '{name}'; its inputs are {string.Join(", ", g.Inputs.Select(i => $"'{i.Name}'"))}");
        var info = g.Inputs[ix];
        if (info.DType != dtype) throw new ModelInputException($"input '{name}' is {info.DType}; it was given {dtype} data");
        if (shape.Length != info.Shape.Count)
            throw new ModelInputException($"input '{name}' has rank {info.Shape.Count} [{string.Join(", ", info.Shape)}]; it was given rank {shape.Length}");
        long n = 1;
        for (int d = 0; d < shape.Length; d++)
        {
            if (shape[d] < 0) throw new ModelInputException($"input '{name}': dim {d} is negative ({shape[d]})");
            if (!info.Shape[d].IsSymbolic && info.Shape[d].Value != shape[d])
                throw new ModelInputException($"input '{name}': dim {d} must be {info.Shape[d].Value}, got {shape[d]}");
            n *= shape[d];
        }
        if (n != count) throw new ModelInputException($"input '{name}': shape implies {n} values but {count} were given");
        var buf = _inputs[ix];
        buf.Ensure(Math.Max(4, bytes.Length));
        bytes.CopyTo(new Span<byte>((void*)buf.Ptr, bytes.Length));
        var t = T[Model.InputIds[ix]];
        t.SetShape(shape);
        t.DType = dtype;
        t.Ptr = buf.Ptr;
        _inputSet[ix] = true;
    }

    /// <summary>
    /// Runs the graph on the current inputs. With states, the new keys/values are appended at [PastLength,
    /// PastLength + T) and PastLength advances by T when every node succeeded.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Infer()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        lock (Model.InferLock)
        {
            // CompiledModel.Dispose takes the same lock: checked inside it, a model disposed by another thread either
            // waits for this call to finish or makes it throw here, never frees the pool or packed weights under it.
            ObjectDisposedException.ThrowIf(Model.IsDisposed, Model);
            BindInputs();
            // Workers that blocked while the caller sampled the previous token start waking now, during the shape
            // pass and the first serial ops, instead of inside the first parallel op; unless the last step of as
            // many tokens dispatched no parallel job (a tiny model's decode, every op too small to split): then the
            // wake-up (a futex call, ~3 µs of a 75 µs stories260K step) would only set a worker spinning for nothing.
            long tokens = Model.InputIds.Length > 0 ? T[Model.InputIds[0]].Count : 0;
            if (_lastStepParallel || tokens != _lastStepTokens) Model.Pool.Prewake();
            long jobs = Model.Pool.ParallelJobs;
            _stepOwner = null; _stepB = 0; _stepT = 0;
            foreach (var op in _ops) op.InferShapes();
            if (_stepOwner is not null)
            {
                if (_stepB > Model.Options.MaxBatch)
                    throw new ModelInputException($"batch {_stepB} exceeds MaxBatch {Model.Options.MaxBatch}; compile with a larger RuntimeOptions.MaxBatch");
                if (PastLength > 0 && _stepB != StateBatch)
                    throw new ModelInputException($"batch {_stepB} differs from the {StateBatch} rows held in the KV cache; call ResetState or ReorderState first");
                if (PastLength + _stepT > _stateCapacity)
                    throw new ModelInputException($"{_stepT} new positions after {PastLength} cached ones need {PastLength + _stepT} > the context capacity {_stateCapacity} (state '{_stateCapacityName}'); shorten the prompt or raise RuntimeOptions.MaxContext");
            }
            AssignMemory();
            if (OpTicks is { } ticks)
                for (int i = 0; i < _ops.Length; i++)
                {
                    long t0 = System.Diagnostics.Stopwatch.GetTimestamp();
                    _ops[i].Run();
                    ticks[i] += System.Diagnostics.Stopwatch.GetTimestamp() - t0;
                }
            else foreach (var op in _ops) op.Run();
            if (_stepOwner is not null)
            {
                StateBytesAppended += (long)_stepB * _stepT * _stateBytesPerRowPosition;
                PastLength += _stepT;
                StateBatch = _stepB;
            }
            _hasRun = true;
            _lastStepParallel = Model.Pool.ParallelJobs != jobs;
            _lastStepTokens = tokens;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void BindInputs()
    {
        var g = Model.Model.Graph;
        Array.Fill(_symbols, -1);
        for (int i = 0; i < _inputSet.Length; i++)
        {
            if (!_inputSet[i]) throw new ModelInputException($"input '{g.Inputs[i].Name}' was not set; call SetInput(\"{g.Inputs[i].Name}\", ...) before Infer");
            var t = T[Model.InputIds[i]];
            var syms = Model.InputSymbols[i];
            for (int d = 0; d < syms.Length; d++)
            {
                int s = syms[d];
                if (s < 0) continue;
                if (_symbols[s] < 0) { _symbols[s] = t.Dims[d]; _symbolSource[s] = i; }
                else if (_symbols[s] != t.Dims[d])
                    throw new ModelInputException($"dim '{Model.SymbolNames[s]}' is {_symbols[s]} in input '{g.Inputs[_symbolSource[s]].Name}' but {t.Dims[d]} in input '{g.Inputs[i].Name}'");
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void AssignMemory()
    {
        Array.Clear(_slotNeed);
        var slotOf = Model.SlotOf;
        foreach (var v in Model.NodeValueIds)
            _slotNeed[slotOf[v]] = Math.Max(_slotNeed[slotOf[v]], T[v].Count * 4);
        for (int s = 0; s < _slots.Length; s++)
        {
            nint before = _slots[s].Ptr;
            _slots[s].Ensure(_slotNeed[s]);
            if (_slots[s].Ptr != before) _bound = false;
        }
        // The buffers only move when one grows: a decode step's shapes fit the prefill's, so it skips the rebinding.
        if (_bound) return;
        foreach (var v in Model.NodeValueIds) T[v].Ptr = _slots[slotOf[v]].Ptr;
        _bound = true;
    }

    internal void Probe(long[] estimate)
    {
        var g = Model.Model.Graph;
        for (int i = 0; i < g.Inputs.Count; i++)
        {
            var shape = g.Inputs[i].Shape.Select(d => d.IsSymbolic ? (d.Symbol == "ctx" ? Model.Options.MaxContext : 1) : checked((int)d.Value)).ToArray();
            int count = shape.Aggregate(1, (a, b) => a * b);
            if (g.Inputs[i].DType == DType.I32) SetInput(g.Inputs[i].Name, new int[count], shape);
            else SetInput(g.Inputs[i].Name, new float[count], shape);
        }
        try
        {
            foreach (var op in _ops) op.InferShapes();
        }
        catch (ModelInputException)
        {
            // A one-token probe can fail on graphs whose inputs relate in ways the probe cannot guess;
            // the first real Infer reports such errors. Sizes seen so far still guide the memory plan.
        }
        foreach (var v in Model.NodeValueIds) estimate[v] = T[v].Count;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void RegisterStep(OpExec op, int batch, int t)
    {
        if (_stepOwner is null) { _stepOwner = op; _stepB = batch; _stepT = t; return; }
        if (batch != _stepB || t != _stepT)
            throw new ModelInputException($"node '{op.Node.Name}' appends [{batch}, {t}] to the cache but node '{_stepOwner.Node.Name}' appends [{_stepB}, {_stepT}]");
    }

    /// <summary>State <paramref name="state"/> of an f32 cache ([batch, kv_heads, capacity, head_dim] floats).</summary>
    internal float* StatePtr(int state)
    {
        System.Diagnostics.Debug.Assert(Model.StateElementBytes == 4, "the states hold halves; use HalfStatePtr");
        return (float*)_states[state].Ptr;
    }

    /// <summary>State <paramref name="state"/> of an f16 cache (the same layout, IEEE half bits).</summary>
    internal ushort* HalfStatePtr(int state)
    {
        System.Diagnostics.Debug.Assert(Model.StateElementBytes == 2, "the states hold floats; use StatePtr");
        return (ushort*)_states[state].Ptr;
    }

    // Per worker: an f16 cache's keys and values of one (row, kv head) widened to f32 for the prefill kernel.
    private readonly NativeBuffer[] _kvWiden;

    /// <summary>
    /// Grows every worker's widening buffer to <paramref name="floats"/> (called before a multi-token step over an f16
    /// cache is dispatched, so workers never allocate); grow-only.
    /// </summary>
    internal void EnsureKvWiden(long floats)
    {
        foreach (var b in _kvWiden) b.Ensure(Math.Max(64, floats * 4));
    }

    /// <summary>Worker <paramref name="worker"/>'s widening buffer (see <see cref="EnsureKvWiden"/>).</summary>
    internal float* KvWidenFor(int worker) => (float*)_kvWiden[worker].Ptr;

    private readonly Dictionary<string, RopeAngles> _ropeAngles = new(StringComparer.Ordinal);

    /// <summary>The request's cos/sin cache for Rope ops whose inverse frequencies are <paramref name="key"/> (made at construction).</summary>
    internal RopeAngles SharedRopeAngles(string key, int half)
    {
        if (!_ropeAngles.TryGetValue(key, out var a)) _ropeAngles[key] = a = new RopeAngles(half);
        return a;
    }

    internal float* ScratchFor(int worker) => (float*)_scratch[worker].Ptr;

    // One grow-only, 64-byte aligned buffer for an op's prefill-sized working set (the int4 GEMM's quantized
    // activations): ops run one after another, so every node shares it instead of each keeping its own.
    private readonly NativeBuffer _prefillScratch = new();

    /// <summary>At least <paramref name="bytes"/> of 64-byte aligned memory shared by the request's ops (valid during one op's Run).</summary>
    internal byte* PrefillScratch(long bytes)
    {
        _prefillScratch.Ensure(bytes);
        return (byte*)_prefillScratch.Ptr;
    }

    /// <summary>The float32 output <paramref name="name"/> of the last Infer (valid until the next Infer).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public ReadOnlySpan<float> GetOutput(string name)
    {
        var t = Output(name);
        if (t.DType != DType.F32) throw new InvalidOperationException($"output '{name}' is {t.DType}; use GetOutputInt");
        return new ReadOnlySpan<float>((void*)t.Ptr, checked((int)t.Count));
    }

    /// <summary>The I32 output <paramref name="name"/> (TopK indices) of the last Infer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public ReadOnlySpan<int> GetOutputInt(string name)
    {
        var t = Output(name);
        if (t.DType != DType.I32) throw new InvalidOperationException($"output '{name}' is {t.DType}; use GetOutput");
        return new ReadOnlySpan<int>((void*)t.Ptr, checked((int)t.Count));
    }

    /// <summary>The shape of output <paramref name="name"/> after the last Infer (a new array).</summary>
    public int[] GetOutputShape(string name) => GetOutputDims(name).ToArray();

    /// <summary>The shape of output <paramref name="name"/> without allocating (valid until the next Infer).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public ReadOnlySpan<int> GetOutputDims(string name)
    {
        var t = Output(name);
        return new ReadOnlySpan<int>(t.Dims, 0, t.Rank);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private TensorRt Output(string name)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var outs = Model.Model.Graph.Outputs;
        for (int i = 0; i < outs.Count; i++)
            if (outs[i].Name == name)
            {
                if (!_hasRun) throw new InvalidOperationException($"output '{name}' is not available before Infer");
                return T[Model.OutputIds[i]];
            }
        throw new ArgumentException($"the model has no output '{name}'; its outputs are {string.Join(", ", outs.Select(o => $"'{o.Name}'"))}", nameof(name));
    }

    /// <summary>Forgets every cached position (PastLength = 0); the memory is kept.</summary>
    public void ResetState()
    {
        PastLength = 0;
        StateBatch = 0;
    }

    /// <summary>Keeps only the first <paramref name="length"/> cached positions (speculative decoding, chat rollback).</summary>
    public void TruncateState(int length)
    {
        if (length < 0 || length > PastLength)
            throw new ArgumentOutOfRangeException(nameof(length), $"length {length} must be within [0, {PastLength}] (the cached positions)");
        PastLength = length;
        if (length == 0) StateBatch = 0;
    }

    /// <summary>
    /// Re-arranges cache rows in place: new row i = old row <paramref name="rows"/>[i] (beam search). The row count may
    /// change (up to MaxBatch); rows may repeat.
    /// </summary>
    public void ReorderState(ReadOnlySpan<int> rows)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (rows.Length == 0 || rows.Length > Model.Options.MaxBatch)
            throw new ArgumentOutOfRangeException(nameof(rows), $"{rows.Length} rows; expected 1..{Model.Options.MaxBatch} (MaxBatch)");
        if (PastLength > 0)
        {
            for (int i = 0; i < rows.Length; i++)
                if ((uint)rows[i] >= (uint)StateBatch)
                    throw new ArgumentOutOfRangeException(nameof(rows), $"rows[{i}] = {rows[i]} is outside the {StateBatch} cached rows");
            bool identity = rows.Length <= StateBatch;
            for (int i = 0; identity && i < rows.Length; i++) identity = rows[i] == i;
            if (!identity)
                for (int s = 0; s < _states.Length; s++) ReorderOne(s, rows);
        }
        StateBatch = rows.Length;
    }

    // Row i of state s becomes old row rows[i], for the PastLength positions of each kv head (f32 or f16 elements),
    // through a compact copy of the StateBatch rows in use.
    private void ReorderOne(int s, ReadOnlySpan<int> rows)
    {
        var def = Model.States[s];
        byte* st = (byte*)_states[s].Ptr;
        int elementBytes = Model.StateElementBytes;
        long used = (long)PastLength * def.HeadDim * elementBytes;   // bytes per (row, kv head)
        long rowUsed = used * def.KvHeads;                             // bytes per row in the tmp copy
        _reorderTmp.Ensure(StateBatch * rowUsed);
        byte* tmp = (byte*)_reorderTmp.Ptr;
        long rowStride = def.RowFloats * elementBytes, headStride = (long)def.Capacity * def.HeadDim * elementBytes;
        for (int b = 0; b < StateBatch; b++)
            for (int h = 0; h < def.KvHeads; h++)
                Buffer.MemoryCopy(st + b * rowStride + h * headStride, tmp + b * rowUsed + h * used, used, used);
        for (int i = 0; i < rows.Length; i++)
            for (int h = 0; h < def.KvHeads; h++)
                Buffer.MemoryCopy(tmp + rows[i] * rowUsed + h * used, st + i * rowStride + h * headStride, used, used);
        StateBytesCopied += (StateBatch + rows.Length) * rowUsed;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var b in _inputs) b.Dispose();
        foreach (var b in _slots) b.Dispose();
        foreach (var b in _states) b.Dispose();
        foreach (var b in _scratch) b.Dispose();
        foreach (var b in _kvWiden) b.Dispose();
        _prefillScratch.Dispose();
        _reorderTmp.Dispose();
    }
}
