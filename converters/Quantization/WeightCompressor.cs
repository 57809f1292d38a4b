// Weight compression at export: the analogue of NNCF's compress_weights (optimum-cli --weight-format int8|int4).
// The storage layout and rounding are the contract of docs/quantization.md (shared with the runtime kernels and the
// GGUF writer): group-32 symmetric int8/int4 are exactly llama.cpp's Q8_0/Q4_0 blocks (ggml-quants.c
// quantize_row_q8_0_ref / quantize_row_q4_0_ref, with the scale rounded to f16 before dividing), asymmetric follows
// NNCF's min/max scheme. Not supported: data-aware methods (AWQ, GPTQ, scale estimation), mixed ratios, NF4.
using System.Text.RegularExpressions;
using Hub.IR;
using Hub.Weights;

namespace Hub.Converters.Compression;

/// <summary>What to compress and how; null fields take optimum-cli's defaults for the scheme.</summary>
public sealed record WeightCompressionOptions
{
    /// <summary><c>int8</c> or <c>int4</c>.</summary>
    public string Scheme { get; init; } = WeightCompressor.Int8;
    /// <summary>Values per scale along K; 0 = one group per output channel; null = 0 for int8, 128 for int4.</summary>
    public int? GroupSize { get; init; }
    /// <summary>Symmetric (no zero points) or asymmetric; null = asymmetric (NNCF's default for both widths).</summary>
    public bool? Symmetric { get; init; }
    /// <summary>Regexes (searched, not anchored) on IR weight names kept in the export's float format.</summary>
    public IReadOnlyList<string> IgnoredScope { get; init; } = Array.Empty<string>();
    /// <summary>int4 only: also compress embeddings and the output projection to int4 instead of int8 (NNCF's all_layers).</summary>
    public bool AllLayers { get; init; }
    /// <summary>Weights that project to the model's outputs (the LM head); int4 mode keeps them in the int8 backup.</summary>
    public IReadOnlyCollection<string> OutputProjections { get; init; } = Array.Empty<string>();

    /// <summary>The effective group size (defaults applied).</summary>
    public int EffectiveGroupSize => GroupSize ?? (Scheme == WeightCompressor.Int4 ? 128 : 0);
    /// <summary>The effective symmetry (defaults applied).</summary>
    public bool EffectiveSymmetric => Symmetric ?? false;

    /// <summary>Throws <see cref="ArgumentException"/> when the options cannot describe a valid compression.</summary>
    public void Validate()
    {
        if (Scheme is not (WeightCompressor.Int8 or WeightCompressor.Int4))
            throw new ArgumentException($"weight compression scheme '{Scheme}' is not int8 or int4", nameof(Scheme));
        int g = EffectiveGroupSize;
        if (g < 0) throw new ArgumentException($"group size {g} must be ≥ 0 (0 = per output channel)", nameof(GroupSize));
        if (Scheme == WeightCompressor.Int4 && g % 32 != 0)
            throw new ArgumentException($"int4 group size {g} must be a multiple of 32 (32, 64, 128, ...) or 0 for per-channel: int4 is packed in runs of 32 values", nameof(GroupSize));
        foreach (var p in IgnoredScope)
        {
            try { _ = new Regex(p); }
            catch (ArgumentException e) { throw new ArgumentException($"ignored-scope pattern '{p}' is not a valid regular expression: {e.Message}", nameof(IgnoredScope), e); }
        }
    }
}

/// <summary>A quantized [N, K] matrix in the IR layout of docs/quantization.md.</summary>
/// <param name="Scheme"><c>int8</c> or <c>int4</c>.</param>
/// <param name="N">Rows (output channels).</param>
/// <param name="K">Logical columns (inputs).</param>
/// <param name="GroupSize">Values per scale along K (0 = per channel).</param>
/// <param name="Symmetric">Symmetric (no zero points).</param>
/// <param name="Data">I8 [N, K] (int8 sym), U8 [N, K] (int8 asym) or packed U8 [N, K/2] (int4).</param>
/// <param name="Scales">F32 [N, groups], each value exactly representable in float16.</param>
/// <param name="Zeros">U8 [N, groups] for asymmetric schemes, else null.</param>
public sealed record QuantizedMatrix(string Scheme, int N, int K, int GroupSize, bool Symmetric, byte[] Data, float[] Scales, byte[]? Zeros)
{
    /// <summary>Groups per row.</summary>
    public int Groups => GroupSize == 0 ? 1 : K / GroupSize;
    /// <summary>Values per group.</summary>
    public int GroupLength => GroupSize == 0 ? K : GroupSize;
}

/// <summary>
/// Compresses Linear weights and embedding tables to int8/int4 while a model is written as IR
/// (<see cref="IrWriteOptions.Encoder"/>); vectors (norms, biases) are never touched.
/// </summary>
public sealed class WeightCompressor
{
    /// <summary>Scheme name of 8-bit weights.</summary>
    public const string Int8 = "int8";
    /// <summary>Scheme name of 4-bit weights.</summary>
    public const string Int4 = "int4";

    private readonly WeightCompressionOptions _o;
    private readonly Regex[] _ignored;
    private readonly IProgress<string>? _progress;
    private readonly List<(string Name, string Format)> _decisions = new();

    /// <summary>Creates a compressor; <paramref name="progress"/> hears about fallbacks and kept tensors.</summary>
    public WeightCompressor(WeightCompressionOptions options, IProgress<string>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _o = options; _progress = progress;
        _ignored = options.IgnoredScope.Select(p => new Regex(p, RegexOptions.CultureInvariant)).ToArray();
    }

    /// <summary>Every weight seen so far and the format it was stored in (e.g. <c>int4 asym g128</c>, <c>float</c>).</summary>
    public IReadOnlyList<(string Name, string Format)> Decisions => _decisions;

    /// <summary>One line per storage format with the number of tensors that took it.</summary>
    public string Summary() => string.Join(", ", _decisions.GroupBy(d => d.Format).Select(g => $"{g.Key}: {g.Count()}"));

    /// <summary>
    /// The weight inputs of the graph's last Linear node (the LM head or classifier): NNCF keeps the last layer in
    /// its backup precision in int4 mode. Works for tied heads too (the name is then the embedding table).
    /// </summary>
    public static IReadOnlyCollection<string> FindOutputProjections(Graph graph)
    {
        var last = graph.Nodes.LastOrDefault(n => n.Op == Ops.Linear && n.Inputs.Count > 1);
        return last is null ? Array.Empty<string>() : new[] { last.Inputs[1] };
    }

    /// <summary>The <see cref="IrWriteOptions.Encoder"/> hook: the stored tensors of <paramref name="w"/>, or null for the float path.</summary>
    public IReadOnlyList<EncodedWeight>? Encode(PendingWeight w, float[] data)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentNullException.ThrowIfNull(data);
        if (w.Kind == WeightKind.Vector || w.Tensor.Shape.Rank != 2) { Decide(w.Name, "float"); return null; }
        if (_ignored.Any(r => r.IsMatch(w.Name)))
        {
            Decide(w.Name, "float");
            _progress?.Report($"{w.Name}: kept in float (ignored scope)");
            return null;
        }
        int n = checked((int)w.Tensor.Shape[0]), k = checked((int)w.Tensor.Shape[1]);
        if (data.LongLength != (long)n * k) throw new CheckpointFormatException(w.Tensor.Origin, w.Name, $"has {data.LongLength} values, expected {n}×{k}");
        string scheme = _o.Scheme;
        int group = _o.EffectiveGroupSize;
        bool sym = _o.EffectiveSymmetric;
        bool backup = scheme == Int4 && !_o.AllLayers && (w.Kind == WeightKind.Embedding || _o.OutputProjections.Contains(w.Name));
        if (backup) { scheme = Int8; group = 0; sym = false; }
        else if (!Fits(scheme, k, group))
        {
            string why = scheme == Int4 && k % 32 != 0 ? $"K = {k} is not a multiple of 32" : $"K = {k} is not a multiple of the group size {group}";
            // int4 falls back to NNCF's backup mode (int8 asymmetric); int8 keeps the requested symmetry.
            sym = scheme == Int8 && sym;
            scheme = Int8; group = 0;
            _progress?.Report($"{w.Name} [{n}, {k}]: {why}; stored as int8 {(sym ? "sym" : "asym")} per-channel instead");
        }
        var q = Quantize(data, n, k, scheme, group, sym);
        Decide(w.Name, Describe(scheme, group, sym));
        return ToEncoded(w.Name, q);
    }

    private void Decide(string name, string format) => _decisions.Add((name, format));

    /// <summary>Short description of a storage format, e.g. <c>int4 sym g32</c> or <c>int8 asym per-channel</c>.</summary>
    public static string Describe(string scheme, int group, bool sym) => $"{scheme} {(sym ? "sym" : "asym")} {(group == 0 ? "per-channel" : $"g{group}")}";

    /// <summary>True when a row of <paramref name="k"/> values can be stored in <paramref name="scheme"/> with <paramref name="group"/>.</summary>
    public static bool Fits(string scheme, int k, int group) =>
        (group == 0 || k % group == 0) && (scheme != Int4 || (k % 32 == 0 && group % 32 == 0));

    /// <summary>The IR entries of a quantized matrix: data, <c>.scales</c> (F16) and (asymmetric) <c>.zeros</c>.</summary>
    public static IReadOnlyList<EncodedWeight> ToEncoded(string name, QuantizedMatrix q)
    {
        var quant = new Quantization(q.Scheme, q.GroupSize, q.Symmetric, name + ".scales", q.Symmetric ? null : name + ".zeros");
        var dataDType = q.Scheme == Int8 && q.Symmetric ? DType.I8 : DType.U8;
        var dataShape = new Shape(q.N, q.Scheme == Int4 ? q.K / 2 : q.K);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("IR weights are little-endian");
        // F16 scales (half the scale bytes of F32): the quantizer already rounded every scale to f16, so this is exact.
        var scaleBytes = new byte[q.Scales.Length * 2];
        for (int i = 0; i < q.Scales.Length; i++)
        {
            var h = (Half)q.Scales[i];
            if ((float)h != q.Scales[i] || !Half.IsFinite(h))
                throw new ArgumentException($"scale {i} of '{name}' ({q.Scales[i]}) is not a finite float16 value; the quantizer must round scales to f16", nameof(q));
            System.Buffers.Binary.BinaryPrimitives.WriteHalfLittleEndian(scaleBytes.AsSpan(2 * i), h);
        }
        var list = new List<EncodedWeight>
        {
            new(name, dataDType, dataShape, q.Data, quant),
            new(quant.Scales, DType.F16, new Shape(q.N, q.Groups), scaleBytes, null),
        };
        if (q.Zeros is not null) list.Add(new EncodedWeight(quant.Zeros!, DType.U8, new Shape(q.N, q.Groups), q.Zeros, null));
        return list;
    }

    /// <summary>Quantizes a row-major [n, k] matrix exactly as docs/quantization.md specifies.</summary>
    public static QuantizedMatrix Quantize(ReadOnlySpan<float> x, int n, int k, string scheme, int groupSize, bool symmetric)
    {
        if (scheme is not (Int8 or Int4)) throw new ArgumentException($"scheme '{scheme}' is not int8 or int4", nameof(scheme));
        if (n < 0 || k <= 0 || x.Length != (long)n * k) throw new ArgumentException($"{x.Length} values do not form [{n}, {k}]", nameof(x));
        if (!Fits(scheme, k, groupSize)) throw new ArgumentException($"K = {k} cannot be stored as {Describe(scheme, groupSize, symmetric)}", nameof(groupSize));
        int gl = groupSize == 0 ? k : groupSize, groups = k / gl;
        bool int4 = scheme == Int4;
        var data = new byte[int4 ? (long)n * k / 2 : (long)n * k];
        var scales = new float[(long)n * groups];
        var zeros = symmetric ? null : new byte[(long)n * groups];
        var q = new byte[gl];
        for (int r = 0; r < n; r++)
            for (int g = 0; g < groups; g++)
            {
                var src = x.Slice(r * k + g * gl, gl);
                long gi = (long)r * groups + g;
                scales[gi] = int4 ? QuantizeGroup4(src, symmetric, q, out var z4) : QuantizeGroup8(src, symmetric, q, out z4);
                if (zeros is not null) zeros[gi] = z4;
                if (!int4) { q.CopyTo(data.AsSpan(r * k + g * gl)); continue; }
                // Q4_0 packing: byte j of each run of 32 holds value j (low nibble) and value j + 16 (high nibble).
                var dst = data.AsSpan(r * (k / 2) + g * gl / 2, gl / 2);
                for (int run = 0; run < gl; run += 32)
                    for (int j = 0; j < 16; j++)
                        dst[run / 2 + j] = (byte)(q[run + j] | (q[run + j + 16] << 4));
            }
        return new QuantizedMatrix(scheme, n, k, groupSize, symmetric, data, scales, zeros);
    }

    /// <summary>Rounds to the nearest float16 (the scales' storage precision in GGUF).</summary>
    private static float F16(float v) => (float)(Half)v;

    // int8: symmetric q ∈ [-127, 127] stored as sbyte bits; asymmetric q ∈ [0, 255].
    private static float QuantizeGroup8(ReadOnlySpan<float> x, bool sym, Span<byte> q, out byte zero)
    {
        zero = 0;
        if (sym)
        {
            float amax = 0;
            foreach (var v in x) amax = MathF.Max(amax, MathF.Abs(v));
            float s = F16(amax / 127f);
            for (int i = 0; i < x.Length; i++)
                q[i] = s == 0 ? (byte)0 : (byte)(sbyte)Math.Clamp(MathF.Round(x[i] / s, MidpointRounding.AwayFromZero), -127f, 127f);
            return s;
        }
        return Asymmetric(x, 255, q, out zero);
    }

    // int4: symmetric q ∈ [0, 15] around 8 (Q4_0); asymmetric q ∈ [0, 15] with zero point.
    private static float QuantizeGroup4(ReadOnlySpan<float> x, bool sym, Span<byte> q, out byte zero)
    {
        zero = 8;
        if (!sym) return Asymmetric(x, 15, q, out zero);
        float amax = 0, m = 0;
        foreach (var v in x)
            if (amax < MathF.Abs(v)) { amax = MathF.Abs(v); m = v; }   // first value of largest magnitude, signed
        float s = F16(m / -8f);
        for (int i = 0; i < x.Length; i++)
            q[i] = s == 0 ? (byte)8 : (byte)Math.Clamp((int)MathF.Truncate(x[i] / s + 8.5f), 0, 15);
        return s;
    }

    // NNCF's asymmetric scheme: s = (max - min) / qmax, z = clamp(round(-min / s)), q = clamp(round(x / s) + z).
    // A constant non-zero group has max = min; its range is widened to include 0 so that it keeps its value.
    private static float Asymmetric(ReadOnlySpan<float> x, int qmax, Span<byte> q, out byte zero)
    {
        float min = float.PositiveInfinity, max = float.NegativeInfinity;
        foreach (var v in x) { min = MathF.Min(min, v); max = MathF.Max(max, v); }
        if (x.Length == 0) { zero = 0; return 0; }
        if (min == max) { min = MathF.Min(min, 0); max = MathF.Max(max, 0); }
        float s = F16((max - min) / qmax);
        if (s == 0 || !float.IsFinite(s))
        {
            if (!float.IsFinite(s) && max != min) throw new ArgumentException($"weight range [{min}, {max}] overflows a float16 scale");
            zero = 0;
            q[..x.Length].Clear();
            return 0;
        }
        int z = (int)Math.Clamp(MathF.Round(-min / s), 0, qmax);
        zero = (byte)z;
        for (int i = 0; i < x.Length; i++)
            q[i] = (byte)Math.Clamp((int)MathF.Round(x[i] / s) + z, 0, qmax);
        return s;
    }

    /// <summary>The float values a quantized matrix stands for (the reference the kernels are tested against).</summary>
    public static float[] Dequantize(QuantizedMatrix q)
    {
        ArgumentNullException.ThrowIfNull(q);
        int gl = q.GroupLength, groups = q.Groups;
        var y = new float[(long)q.N * q.K];
        for (int r = 0; r < q.N; r++)
            for (int c = 0; c < q.K; c++)
            {
                int g = c / gl;
                float s = q.Scales[r * groups + g];
                int v;
                if (q.Scheme == Int4)
                {
                    int run = c / 32 * 32, j = c - run;
                    byte b = q.Data[(r * q.K + run) / 2 + (j & 15)];
                    v = j < 16 ? b & 15 : b >> 4;
                    v -= q.Symmetric ? 8 : q.Zeros![r * groups + g];
                }
                else v = q.Symmetric ? (sbyte)q.Data[r * q.K + c] : q.Data[r * q.K + c] - q.Zeros![r * groups + g];
                y[(long)r * q.K + c] = v * s;
            }
        return y;
    }
}
