using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;
using System.Text.Json.Nodes;
using Hub.IR;
using Hub.Runtime.Kernels;

namespace Hub.Runtime.Execution;

internal sealed unsafe class LinearExec : OpExec
{
    private readonly int _n, _k;
    private readonly DType _wt;
    // per-run parameters read by Execute
    private float* _x, _y, _bias, _packed;
    private byte* _w;
    private int _m, _unitCols, _unitRows;
    private bool _gemv;
    // Multi-threaded GEMM: one contiguous share per worker with stealing at the end (null until first used).
    private Gemm.GemmSplit? _split;
    private bool _useSplit;
    // GELU applied to each finished output block (0 none, 1 erf, 2 tanh) when the graph's Gelu was folded in here.
    private readonly int _gelu;
    // F16 decode (m = 1): x prepared once per run for HalfGemv, and per GEMV unit whether its rows are known finite
    // (0 unknown, 1 finite: fast kernel, 2 holds inf/NaN: exact kernel). The first decode step runs the exact kernel,
    // which reports what it saw, so learning this costs no extra pass over the (possibly memory-mapped) weights.
    private readonly float[]? _xHalf;
    private double _xHalfScale;
    private bool _halfGemv, _xHalfWide;
    private byte[] _unitFinite = [];
    private int _unitFiniteCols;

    public LinearExec(Node n, InferRequest r) : base(n, r, 2, 3, 1)
    {
        if (!R.Model.IsWeight(In[1])) throw BadGraph($"weight '{n.Inputs[1]}' must be a stored weight");
        var info = R.Model.WeightInfoOf(In[1]);
        if (info.Quant is not null)
            throw new UnsupportedModelException($"node '{n.Name}': {info.Quant.Scheme} weight '{info.Name}' is not supported by this runtime yet; re-export with --weight-format f32, f16 or bf16");
        var w = R.T[In[1]];
        if (w.Rank != 2) throw BadGraph($"weight '{n.Inputs[1]}' must be [N, K], got {w.ShapeString()}");
        if (w.DType is not (DType.F32 or DType.F16 or DType.BF16)) throw BadGraph($"weight '{n.Inputs[1]}' has dtype {w.DType}; expected F32, F16 or BF16");
        _n = w.Dims[0]; _k = w.Dims[1]; _wt = w.DType;
        if (R.Model.GeluEpilogueOf(n) is { } gelu) _gelu = GeluKernel.IsTanh(gelu) == true ? 2 : 1;
        if (HasInput(2))
        {
            RequireWeightF32(2);
            if (R.T[In[2]].Count != _n) throw BadGraph($"bias '{n.Inputs[2]}' has {R.T[In[2]].Count} values for {_n} outputs");
        }
        if (_wt == DType.F16 && HalfGemv.IsSupported && _k >= 16) _xHalf = GC.AllocateArray<float>(HalfGemv.PreparedFloats(_k), pinned: true);
    }

    public override long ScratchFloats => Gemm.ScratchFloats(_k);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void InferShapes() => InferLinearShapes(_n, _k);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run()
    {
        var x = X(0);
        _m = checked((int)Prod(x, 0, x.Rank - 1));
        if (_m == 0 || _n == 0) return;
        _x = x.F; _y = Y().F; _w = X(1).B; _bias = HasInput(2) ? X(2).F : null;
        _gemv = _m <= Gemm.GemvMaxRows;
        int workers = R.Model.Pool.Size;
        double flops = 2.0 * _m * _n * _k;
        bool single = workers == 1 || flops < 200_000;
        if (_gemv)
        {
            // Many small units claimed homed (WorkerPool.RunHomed): each worker streams its own contiguous share, and
            // when a neighbour process delays one worker, the others take over the rest of its share, so the step
            // slows in proportion instead of waiting for a fixed half.
            int units = single ? 1 : Math.Min(workers * 16, (_n + 31) / 32);
            _unitCols = ((_n + units - 1) / units + 3) & ~3;
            units = Math.Max(1, (_n + _unitCols - 1) / Math.Max(1, _unitCols));
            _halfGemv = _m == 1 && _xHalf != null;
            if (_halfGemv)
            {
                // The kernel choice is read once per run: PrepareX lays x out for it (benchmarks flip it between runs).
                _xHalfWide = HalfGemv.Wide;
                fixed (float* xp = _xHalf) _xHalfScale = HalfGemv.PrepareXFor(_x, _k, xp, _xHalfWide);
                if (_unitFinite.Length != units || _unitFiniteCols != _unitCols) { _unitFinite = new byte[units]; _unitFiniteCols = _unitCols; }
            }
            R.Model.Pool.RunHomed(this, units);
        }
        else
        {
            // A small model's weights are packed once (shared by the model's requests); null keeps per-call packing.
            if (_packed == null) _packed = R.Model.PackedWeight(In[1], _w, _wt, _n, _k);
            _useSplit = !single && Gemm.StealSplit;
            if (_useSplit)
            {
                _split ??= new Gemm.GemmSplit();
                _split.Reset(_m, _n, _k, workers, wInPlace: _packed == null && _wt == DType.F32);
                R.Model.Pool.Run(this, _split.Shares);
                return;
            }
            int units = Gemm.PlanUnits(_m, _n, single ? 1 : workers, out _unitRows, out _unitCols);
            R.Model.Pool.Run(this, units);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int index, int worker)
    {
        float* scratch = R.ScratchFor(worker);
        if (_gemv)
        {
            int c0 = index * _unitCols, c1 = Math.Min(_n, c0 + _unitCols);
            if (c0 >= c1) return;
            if (_halfGemv)
            {
                byte state = _unitFinite[index];
                if (state == 1 && _xHalfScale != 0)
                {
                    fixed (float* xp = _xHalf) HalfGemv.RowsFor(xp, _xHalfScale, _x, _k, (ushort*)_w, _bias, _y, c0, c1, _xHalfWide);
                }
                else
                {
                    bool finite = HalfGemv.RowsExact(_x, _k, (ushort*)_w, _bias, _y, c0, c1);
                    if (state == 0) _unitFinite[index] = finite ? (byte)1 : (byte)2;
                }
            }
            else Gemm.GemvRows(_x, _m, _k, _w, _wt, _n, _bias, _y, c0, c1, scratch);
            if (_gelu != 0) Activate(0, _m, c0, c1);
            return;
        }
        if (_useSplit)
        {
            // This worker's share from its front, then chunks stolen from the back of the others' shares; A is packed
            // once per row block into this worker's scratch and reused by all its chunks.
            int cursor = 0, packedRow = -1;
            while (_split!.Claim(index, ref cursor, out int m0, out int m1, out int n0, out int n1))
            {
                Gemm.RunChunk(_x, m0, m1, _k, _packed != null ? null : _w, _wt, _packed, _n, _bias, _y, n0, n1, scratch, _split.PackA, ref packedRow, _m);
                if (_gelu != 0) Activate(m0, m1, n0, n1);
            }
            return;
        }
        if (_packed != null) Gemm.RunUnitPacked(index, _x, _m, _k, _packed, _n, _bias, _y, _unitRows, _unitCols, scratch);
        else Gemm.RunUnit(index, _x, _m, _k, _w, _wt, _n, _bias, _y, _unitRows, _unitCols, scratch);
        if (_gelu != 0)
        {
            Gemm.UnitBlock(index, _m, _n, _unitRows, _unitCols, out int m0, out int m1, out int n0, out int n1);
            if (m0 < m1) Activate(m0, m1, n0, n1);
        }
    }

    // GELU in place on rows [m0, m1) × columns [n0, n1) of the output, while the block is still in cache.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Activate(int m0, int m1, int n0, int n1)
    {
        if (n1 <= n0) return;
        for (int i = m0; i < m1; i++)
        {
            float* row = _y + (long)i * _n + n0;
            GeluKernel.Apply(row, row, n1 - n0, tanh: _gelu == 2);
        }
    }
}

internal sealed unsafe class RopeExec : OpExec
{
    private readonly int _heads, _hd, _rot, _off, _posRow;
    private readonly bool _interleaved;
    private readonly float _theta, _posScale, _linear = 1f;
    private readonly string _scaling = "default";
    private readonly float _factor = 1f, _origMax;
    private readonly float[] _invFreq, _baseInvFreq;

    public RopeExec(Node n, InferRequest r) : base(n, r, 2, 2, 1)
    {
        _heads = checked((int)n.GetInt("heads"));
        _hd = checked((int)n.GetInt("head_dim"));
        _rot = checked((int)n.GetInt("rotary_dims", _hd));
        _off = checked((int)n.GetInt("channel_offset", 0));
        _posRow = checked((int)n.GetInt("positions_offset", 0));
        var style = n.GetString("style", "half");
        _interleaved = style switch { "half" => false, "interleaved" => true, _ => throw BadGraph($"style '{style}' is not 'half' or 'interleaved'") };
        _theta = n.GetFloat("theta", 10000f);
        _posScale = n.GetFloat("position_scale", 1f);
        if (_rot % 2 != 0 || _rot <= 0 || _off < 0 || _off + _rot > _hd)
            throw BadGraph($"rotary_dims {_rot} at channel_offset {_off} does not fit head_dim {_hd} (must be even and inside the head)");
        _invFreq = new float[_rot / 2]; _baseInvFreq = new float[_rot / 2];
        RopeKernels.InverseFrequencies(_theta, _rot, _baseInvFreq);
        if (n.Attributes["scaling"] is JsonObject sc)
        {
            _scaling = ((string?)sc["rope_type"] ?? (string?)sc["type"] ?? "default").ToLowerInvariant();
            _factor = sc["factor"] is JsonNode f ? (float)f.GetValue<double>() : 1f;
            _origMax = sc["original_max_position_embeddings"] is JsonNode om ? (float)om.GetValue<double>() : 0f;
            switch (_scaling)
            {
                case "default": break;
                case "linear": _linear = _factor; break;
                case "dynamic":
                    if (_origMax <= 0) throw BadGraph("dynamic scaling needs 'original_max_position_embeddings'");
                    break;
                case "llama3":
                    {
                        float lo = sc["low_freq_factor"] is JsonNode l ? (float)l.GetValue<double>() : throw BadGraph("llama3 scaling needs 'low_freq_factor'");
                        float hi = sc["high_freq_factor"] is JsonNode h ? (float)h.GetValue<double>() : throw BadGraph("llama3 scaling needs 'high_freq_factor'");
                        if (_origMax <= 0) throw BadGraph("llama3 scaling needs 'original_max_position_embeddings'");
                        RopeKernels.Llama3Scale(_baseInvFreq, _factor, lo, hi, _origMax);
                        break;
                    }
                default: throw new UnsupportedModelException($"node '{n.Name}': RoPE scaling type '{_scaling}' is not supported (default, linear, dynamic, llama3)");
            }
        }
        // ChatGLM-6B (v1) rounds its inverse frequencies to float16 even in float32 mode (see Ops.Rope freq_dtype).
        if (n.GetString("freq_dtype", "f32") == "f16")
            for (int i = 0; i < _baseInvFreq.Length; i++) _baseInvFreq[i] = (float)(Half)_baseInvFreq[i];
        _baseInvFreq.CopyTo(_invFreq, 0);
        // Every Rope with the same frequencies (q and k of all layers) rotates by the same angles at a decode step:
        // they share one cos/sin cache keyed by the position, so the step computes them once instead of per op.
        // Dynamic scaling changes the frequencies with the sequence length, so such an op keeps its own.
        _angles = _scaling == "dynamic" ? new RopeAngles(_rot / 2)
            : r.SharedRopeAngles(string.Join(",", _baseInvFreq.Select(f => BitConverter.SingleToInt32Bits(f))), _rot / 2);
    }

    private readonly RopeAngles _angles;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void InferShapes()
    {
        RequireF32(0); RequireI32(1);
        var x = X(0); var p = X(1);
        if (x.Rank != 3 || x.Dims[2] != _heads * _hd) throw Bad($"input {x.ShapeString()} is not [B, T, {_heads}·{_hd}]");
        bool ok = p.Rank == 2 ? p.Dims[0] == x.Dims[0] && p.Dims[1] == x.Dims[1] && _posRow == 0
                : p.Rank == 3 && p.Dims[0] == x.Dims[0] && p.Dims[2] == x.Dims[1] && _posRow < p.Dims[1];
        if (!ok) throw Bad($"positions {p.ShapeString()} do not match input {x.ShapeString()} (expected [B, T] or [B, P, T] with positions_offset {_posRow})");
        Y().SameShape(x);
        Y().DType = DType.F32;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run()
    {
        var x = X(0); var p = X(1); var y = Y();
        int b = x.Dims[0], t = x.Dims[1];
        int rows = p.Rank == 3 ? p.Dims[1] : 1;
        if (_scaling == "dynamic")
        {
            int maxPos = 0;
            for (long i = 0; i < p.Count; i++) maxPos = Math.Max(maxPos, p.I[i]);
            int seq = maxPos + 1;
            if (seq > _origMax)
            {
                // transformers' _compute_dynamic_ntk_parameters
                double baseT = _theta * Math.Pow(_factor * seq / _origMax - (_factor - 1), (double)_rot / (_rot - 2));
                RopeKernels.InverseFrequencies((float)baseT, _rot, _invFreq);
            }
            else _baseInvFreq.CopyTo(_invFreq, 0);
            _angles.Valid = false;
        }
        var ang = _angles;
        for (int bi = 0; bi < b; bi++)
            for (int ti = 0; ti < t; ti++)
            {
                int pos = p.I[((long)bi * rows + _posRow) * t + ti];
                float fp = pos * _posScale;
                if (_linear != 1f) fp /= _linear;
                long off = ((long)bi * t + ti) * _heads * _hd;
                if (!ang.Valid || ang.Position != fp)
                {
                    RopeKernels.Angles(fp, _invFreq, ang.Cos, ang.Sin);
                    ang.Position = fp; ang.Valid = true;
                }
                RopeKernels.Rotate(x.F + off, y.F + off, _heads, _hd, _rot, _off, _interleaved, ang.Cos, ang.Sin);
            }
    }
}

/// <summary>cos/sin of one position's rotary angles, shared by the Rope ops of a request that use the same frequencies.</summary>
internal sealed class RopeAngles(int half)
{
    public readonly float[] Cos = new float[half], Sin = new float[half];
    public float Position;
    public bool Valid;
}

internal sealed unsafe class AttentionExec : OpExec
{
    private readonly int _h, _kv, _hd, _g;
    private readonly float _scale;
    private readonly bool _causal, _prefix;
    private readonly int _stateK = -1, _stateV = -1;
    private int _b, _t, _s, _past, _tChunk, _tChunks;
    private bool _single, _direct;
    // The states hold f16 keys/values (RuntimeOptions.KvCachePrecision); fixed per compiled model.
    private readonly bool _half;
    // Per worker, during one multi-position Run over an f16 cache: the (row, kv head) whose keys/values its widening
    // buffer holds (-1: none) and how many positions of them. Units of one head come in index order, so a worker that
    // takes the next query block of the same head widens only the positions that block adds.
    private readonly int[] _widenHead = [], _widenCount = [];
    // The fused q/k/v projection read in place of the elided Split's outputs (value id, or -1).
    private readonly int _qkv = -1;
    // q·k multiply-adds below which a single thread is faster than waking the pool
    private const long ParallelThreshold = 32_768;

    public AttentionExec(Node n, InferRequest r) : base(n, r, 3, 5, 1)
    {
        _h = checked((int)n.GetInt("heads"));
        _kv = checked((int)n.GetInt("kv_heads", _h));
        _hd = checked((int)n.GetInt("head_dim"));
        if (_h <= 0 || _kv <= 0 || _hd <= 0 || _h % _kv != 0) throw BadGraph($"heads {_h} must be a positive multiple of kv_heads {_kv}, head_dim {_hd} positive");
        _g = _h / _kv;
        _scale = n.GetFloat("scale", 1f / MathF.Sqrt(_hd));
        _causal = n.GetBool("causal", true);
        _prefix = n.GetBool("prefix_bidirectional", false);
        if (HasInput(4) && !_prefix)
            throw BadGraph($"a fifth input '{n.Inputs[4]}' (key mask) goes with prefix_bidirectional only; pass the mask as the fourth input");
        if (r.Model.QkvSourceOf(n) is { } qkv) _qkv = r.Model.ValueId(qkv);
        bool hasK = n.Has("state_k"), hasV = n.Has("state_v");
        if (hasK != hasV) throw BadGraph("state_k and state_v must be given together");
        if (hasK)
        {
            _stateK = r.Model.StateId(n.GetString("state_k"));
            _stateV = r.Model.StateId(n.GetString("state_v"));
            _half = r.Model.StateElementBytes == 2;
            if (_half) { _widenHead = new int[r.Model.Pool.Size]; _widenCount = new int[r.Model.Pool.Size]; }
            foreach (var s in new[] { _stateK, _stateV })
            {
                var st = r.Model.States[s];
                if (st.KvHeads != _kv || st.HeadDim != _hd)
                    throw BadGraph($"state '{st.Name}' is [batch, {st.KvHeads}, ctx, {st.HeadDim}] but the node has kv_heads {_kv}, head_dim {_hd}");
            }
        }
    }

    /// <summary>
    /// Whether a bidirectional, cache-less attention over <paramref name="t"/> queries and <paramref name="s"/> keys
    /// runs the direct kernel, which reads q, k and v as column slices of a fused projection; the other kernels
    /// (one query, or more keys than the direct kernel holds) need them contiguous, so an elided Split copies them.
    /// </summary>
    internal static bool DirectPath(int t, int s) => t > 1 && s <= AttentionKernels.DirectMaxKeys;

    public override long ScratchFloats => Math.Max(Math.Max(AttentionKernels.ScratchFloats(_g, _hd), AttentionKernels.PrefillScratchFloats(_g, _hd)),
        _causal ? 0 : AttentionKernels.DirectScratchFloats(_hd));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void InferShapes()
    {
        RequireF32(0); RequireF32(1); RequireF32(2);
        var q = X(0); var k = X(1); var v = X(2);
        if (q.Rank != 3 || q.Dims[2] != _h * _hd) throw Bad($"q {q.ShapeString()} is not [B, T, {_h}·{_hd}]");
        _b = q.Dims[0]; _t = q.Dims[1];
        CheckKv("k", k);
        CheckKv("v", v);
        _past = _stateK >= 0 ? R.PastLength : 0;
        _s = _past + _t;
        if (_stateK >= 0) R.RegisterStep(this, _b, _t);
        if (HasInput(3))
        {
            var m = X(3);
            if (_prefix)
            {
                if (m.DType != DType.I32 || m.Count != _b) throw Bad($"prefix lengths '{Node.Inputs[3]}' must be I32 [{_b}], got {m.DType} {m.ShapeString()}");
            }
            else if (m.DType != DType.F32 || m.Rank != 2 || m.Dims[0] != _b || m.Dims[1] != _s)
                throw Bad($"mask '{Node.Inputs[3]}' must be F32 [B, S] = [{_b}, {_s}] (S = past {_past} + new {_t}), got {m.DType} {m.ShapeString()}");
        }
        else if (_prefix) throw Bad("prefix_bidirectional needs the prefix-length input");
        if (HasInput(4))
        {
            // prefix_bidirectional's padding mask (ChatGLM-6B left-padded batches)
            var m = X(4);
            if (m.DType != DType.F32 || m.Rank != 2 || m.Dims[0] != _b || m.Dims[1] != _s)
                throw Bad($"mask '{Node.Inputs[4]}' must be F32 [B, S] = [{_b}, {_s}] (S = past {_past} + new {_t}), got {m.DType} {m.ShapeString()}");
        }
        Y().SameShape(q);
        Y().DType = DType.F32;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void CheckKv(string name, TensorRt kt)
    {
        if (kt.Rank != 3 || kt.Dims[0] != _b || kt.Dims[1] != _t || kt.Dims[2] != _kv * _hd)
            throw Bad($"{name} {kt.ShapeString()} is not [{_b}, {_t}, {_kv}·{_hd}]");
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run()
    {
        var k = X(1); var v = X(2);
        if (_stateK >= 0)
        {
            // Append k/v at [past, past+T) of each row's cache in place (rounded to f16 for an f16 cache).
            var sk = R.Model.States[_stateK];
            int cap = sk.Capacity;
            ushort* khs = _half ? R.HalfStatePtr(_stateK) : null, vhs = _half ? R.HalfStatePtr(_stateV) : null;
            float* kfs = _half ? null : R.StatePtr(_stateK), vfs = _half ? null : R.StatePtr(_stateV);
            // A decode step's rows land on lines the weights streamed since the last step evicted (and on pages whose
            // translations went with them): touching all of them first overlaps the misses the stores would take
            // one row at a time.
            if (_t == 1 && Prefetch)
            {
                long rowBytes = (long)_hd * (_half ? 2 : 4);
                byte* kd = _half ? (byte*)khs : (byte*)kfs, vd = _half ? (byte*)vhs : (byte*)vfs;
                for (int b = 0; b < _b; b++)
                    for (int h = 0; h < _kv; h++)
                    {
                        long dst = (((long)b * _kv + h) * cap + _past) * rowBytes;
                        PrefetchLines(kd + dst, rowBytes);
                        PrefetchLines(vd + dst, rowBytes);
                    }
            }
            for (int b = 0; b < _b; b++)
                for (int t = 0; t < _t; t++)
                    for (int h = 0; h < _kv; h++)
                    {
                        long src = ((long)b * _t + t) * _kv * _hd + (long)h * _hd;
                        long dst = (((long)b * _kv + h) * cap + _past + t) * _hd;
                        if (_half)
                        {
                            AttentionKernels.NarrowToHalf(k.F + src, khs + dst, _hd);
                            AttentionKernels.NarrowToHalf(v.F + src, vhs + dst, _hd);
                        }
                        else
                        {
                            Buffer.MemoryCopy(k.F + src, kfs + dst, _hd * 4L, _hd * 4L);
                            Buffer.MemoryCopy(v.F + src, vfs + dst, _hd * 4L, _hd * 4L);
                        }
                    }
            // Several query positions over an f16 cache: each unit widens its (row, kv head)'s keys and values into
            // the worker's buffer for the f32 prefill kernel (O(S·hd) against the block's O(T·S·hd) work). A decode
            // step reads the halves in place (AttendRowHalf reads each once for the whole group).
            if (_half && _t > 1)
            {
                R.EnsureKvWiden(2L * _s * _hd);   // grow-only, sized before dispatch; a decode step never widens
                Array.Fill(_widenHead, -1);   // the buffers hold another op's (or step's) values
            }
        }
        int workers = R.Model.Pool.Size;
        // Decode (one query row) streams each kv head's cache once for the whole group; prefill runs flash blocks of
        // QueriesPerBlock(G) positions × G heads, one unit per (batch row, kv head, query block).
        // Bidirectional, cache-less and short (encoders): the direct path with materialized scores on the GEMM tile.
        _direct = !_causal && !_prefix && _stateK < 0 && DirectPath(_t, _s);
        // With _qkv set and !_direct, the elided Split already copied q, k and v out (SplitExec asks DirectPath too).
        _tChunk = _t == 1 ? 1 : _direct ? AttentionKernels.DirectQueriesPerUnit(_t, _b * _kv, workers) : AttentionKernels.QueriesPerBlock(_g);
        _tChunks = (_t + _tChunk - 1) / _tChunk;
        long work = (long)_t * _s * _h * _hd;
        _single = workers == 1 || work <= ParallelThreshold;
        // A decode step's units are the (row, kv head) caches in memory order: homed claims keep each worker on one
        // run of heads, so the next head's keys it prefetches are its own.
        if (_t == 1 && HomedDecode) R.Model.Pool.RunHomed(this, _single ? 1 : _b * _kv);
        else R.Model.Pool.Run(this, _single ? 1 : _b * _kv * _tChunks);
    }

    /// <summary>Bench switch: decode steps claim their (row, kv head) units homed (<see cref="Threading.WorkerPool.RunHomed"/>).</summary>
    internal static bool HomedDecode { get; set; } = true;

    /// <summary>
    /// Whether a decode step prefetches the cache lines its append writes and, before attending a (row, kv head), the
    /// first <see cref="NextUnitKeys"/> keys and values of the next one (A/B switch of the decode profile, "attnpf").
    /// </summary>
    internal static bool Prefetch = true;

    /// <summary>Keys of the next (row, kv head) that a decode step prefetches: its start, before the hardware prefetcher has seen the stream.</summary>
    internal const int NextUnitKeys = 16;

    // The first keys and values of decode unit u's cache (nothing past the last unit, or outside a cached decode step).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void PrefetchUnit(int u)
    {
        if (!Prefetch || _stateK < 0 || _t != 1 || u >= _b * _kv) return;
        long rowBytes = (long)_hd * (_half ? 2 : 4);
        long head = (long)u * R.Model.States[_stateK].Capacity * rowBytes;   // unit u is (row u / kv, kv head u % kv)
        byte* kp = _half ? (byte*)R.HalfStatePtr(_stateK) : (byte*)R.StatePtr(_stateK);
        byte* vp = _half ? (byte*)R.HalfStatePtr(_stateV) : (byte*)R.StatePtr(_stateV);
        long bytes = Math.Min(_s, NextUnitKeys) * rowBytes;
        PrefetchLines(kp + head, bytes);
        PrefetchLines(vp + head, bytes);
    }

    // Every 64-byte line of [p, p + bytes).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchLines(byte* p, long bytes)
    {
        if (!Sse.IsSupported) return;
        for (byte* a = (byte*)((nint)p & ~(nint)63), end = p + bytes; a < end; a += 64) Sse.Prefetch0(a);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Execute(int index, int worker)
    {
        if (_single)
        {
            for (int u = 0; u < _b * _kv * _tChunks; u++) { PrefetchUnit(u + 1); Unit(u, worker); }
            return;
        }
        PrefetchUnit(index + 1);   // the next unit (this worker's next claim, or the other's): its first lines leave DRAM early
        Unit(index, worker);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Unit(int index, int worker)
    {
        int tc = index % _tChunks, rest = index / _tChunks;
        int kvh = rest % _kv, b = rest / _kv;
        int t0 = tc * _tChunk, t1 = Math.Min(_t, t0 + _tChunk);
        var q = X(0); var y = Y();
        float* k = null, v = null; long stride;
        ushort* kh = null, vh = null;
        if (_stateK >= 0)
        {
            long head = ((long)b * _kv + kvh) * R.Model.States[_stateK].Capacity * _hd;
            if (_half) { kh = R.HalfStatePtr(_stateK) + head; vh = R.HalfStatePtr(_stateV) + head; }
            else { k = R.StatePtr(_stateK) + head; v = R.StatePtr(_stateV) + head; }
            stride = _hd;
        }
        else
        {
            k = X(1).F + (long)b * _t * _kv * _hd + (long)kvh * _hd;
            v = X(2).F + (long)b * _t * _kv * _hd + (long)kvh * _hd;
            stride = (long)_kv * _hd;
        }
        float* mask = null;
        int prefixLen = 0;
        if (HasInput(3))
        {
            if (_prefix) prefixLen = X(3).I[b];
            else mask = X(3).F + (long)b * _s;
            if (HasInput(4)) mask = X(4).F + (long)b * _s;
        }
        float* scratch = R.ScratchFor(worker);
        long qOff = (long)b * _t * _h * _hd + (long)kvh * _g * _hd;
        if (_direct)
        {
            float* qp = q.F + qOff;
            long qStride = (long)_h * _hd;
            if (_qkv >= 0)
            {
                // q, k and v as column slices of the fused projection [B, T, h·hd + 2·kv·hd]
                long d = (long)(_h + 2 * _kv) * _hd;
                float* row = R.T[_qkv].F + (long)b * _t * d;
                qp = row + (long)kvh * _g * _hd;
                k = row + (long)_h * _hd + (long)kvh * _hd;
                v = row + (long)(_h + _kv) * _hd + (long)kvh * _hd;
                qStride = stride = d;
            }
            AttentionKernels.AttendDirect(qp, qStride, t0, t1, _g, _hd, k, v, stride, _s, mask, _scale, y.F + qOff, (long)_h * _hd, scratch);
            return;
        }
        bool widened = _half && _t > 1;
        if (widened)
        {
            // widen the keys the block's queries can see (all S, or up to its last causal position and the prefix)
            // that the worker's buffer does not hold yet
            int seen = _causal ? Math.Min(_s, Math.Max(_past + t1, prefixLen)) : _s;
            k = R.KvWidenFor(worker); v = k + (long)_s * _hd;
            int key = b * _kv + kvh, from = _widenHead[worker] == key ? _widenCount[worker] : 0;
            if (seen > from)
            {
                AttentionKernels.WidenHalf(kh + (long)from * _hd, k + (long)from * _hd, (long)(seen - from) * _hd);
                AttentionKernels.WidenHalf(vh + (long)from * _hd, v + (long)from * _hd, (long)(seen - from) * _hd);
                _widenCount[worker] = seen;
            }
            _widenHead[worker] = key;
            stride = _hd;
        }
        if (_t > 1)
        {
            AttentionKernels.AttendBlock(q.F + qOff, (long)_h * _hd, t0, t1, _g, _hd, k, v, stride, _s, mask, _causal, _past,
                _prefix ? prefixLen : 0, _scale, y.F + qOff, scratch);
            return;
        }
        for (int t = t0; t < t1; t++)
        {
            int qpos = _past + t;
            int end = _s;
            if (_causal)
            {
                end = qpos + 1;
                if (_prefix && qpos < prefixLen) end = Math.Max(end, prefixLen);
                end = Math.Min(end, _s);
            }
            long row = ((long)b * _t + t) * _h * _hd + (long)kvh * _g * _hd;
            if (_half && !widened)
            {
                AttentionKernels.AttendRowHalf(q.F + row, _g, _hd, kh, vh, _hd, end, mask, _scale, y.F + row, scratch);
                continue;
            }
            AttentionKernels.AttendRowWith(q.F + row, _g, _hd, k, v, stride, end, mask, _scale, y.F + row, scratch, R.AttentionRowKernel);
        }
    }
}
