// The sentence-transformers pipeline of a repo (modules.json): Transformer → Pooling → [Normalize], as
// sentence_transformers/models/Pooling.py and Normalize.py compute them. Supported pooling modes: cls, mean, max,
// mean_sqrt_len and lasttoken (several at once are concatenated in Pooling.py's order). Not supported: weighted
// mean pooling and Dense/other trainable modules after pooling (an UnsupportedModelException says so).
using System.Text.Json.Nodes;

namespace Hub.Models.Bert;

/// <summary>One pooling mode of sentence-transformers' <c>Pooling</c> module.</summary>
public enum PoolingMode
{
    /// <summary>The first token's vector (<c>pooling_mode_cls_token</c>).</summary>
    Cls,
    /// <summary>Element-wise max over real tokens (<c>pooling_mode_max_tokens</c>).</summary>
    Max,
    /// <summary>Mean over real tokens (<c>pooling_mode_mean_tokens</c>).</summary>
    Mean,
    /// <summary>Sum over real tokens divided by √count (<c>pooling_mode_mean_sqrt_len_tokens</c>).</summary>
    MeanSqrtLen,
    /// <summary>The last real token's vector (<c>pooling_mode_lasttoken</c>).</summary>
    LastToken,
}

/// <summary>
/// How a repo turns hidden states into sentence embeddings: read from <c>modules.json</c>,
/// <c>{pooling}/config.json</c> and <c>sentence_bert_config.json</c>; a repo without modules.json gets mean pooling
/// (what sentence-transformers itself falls back to for a plain transformers model) and no normalization.
/// </summary>
public sealed record SentenceEmbeddingConfig
{
    /// <summary>Pooling modes, concatenated in this order.</summary>
    public IReadOnlyList<PoolingMode> Pooling { get; init; } = [PoolingMode.Mean];
    /// <summary>True when a Normalize module follows pooling (unit L2 norm).</summary>
    public bool Normalize { get; init; }
    /// <summary><c>max_seq_length</c> of sentence_bert_config.json: the default truncation, or null.</summary>
    public int? MaxSeqLength { get; init; }
    /// <summary>True when the repo has a modules.json (a sentence-transformers repo).</summary>
    public bool FromModulesJson { get; init; }

    /// <summary>Reads the pipeline of the repo in <paramref name="dir"/>.</summary>
    public static SentenceEmbeddingConfig Load(string dir)
    {
        var modulesPath = Path.Combine(dir, "modules.json");
        int? maxSeq = ReadMaxSeqLength(dir);
        if (!File.Exists(modulesPath)) return new SentenceEmbeddingConfig { MaxSeqLength = maxSeq };
        JsonArray modules;
        try { modules = JsonNode.Parse(File.ReadAllText(modulesPath))?.AsArray() ?? throw new FormatException("empty document"); }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or FormatException)
        { throw new ConfigException(modulesPath, "(document)", $"not a JSON list of modules: {e.Message}", e); }

        IReadOnlyList<PoolingMode>? pooling = null;
        bool normalize = false;
        foreach (var m in modules)
        {
            var type = (string?)m?["type"] ?? throw new ConfigException(modulesPath, "type", "a module has no type");
            var name = type[(type.LastIndexOf('.') + 1)..];
            switch (name)
            {
                case "Transformer":
                    break;
                case "Pooling":
                    var sub = (string?)m!["path"] ?? "";
                    pooling = ReadPooling(Path.Combine(dir, sub, "config.json"));
                    break;
                case "Normalize":
                    normalize = true;
                    break;
                default:
                    throw new UnsupportedModelException($"{modulesPath}: module '{type}' is not supported; Hub runs Transformer, Pooling and Normalize modules");
            }
        }
        return new SentenceEmbeddingConfig
        {
            Pooling = pooling ?? throw new ConfigException(modulesPath, "type", "no sentence_transformers.models.Pooling module; add one (mean pooling is the usual choice)"),
            Normalize = normalize,
            MaxSeqLength = maxSeq,
            FromModulesJson = true,
        };
    }

    private static int? ReadMaxSeqLength(string dir)
    {
        var p = Path.Combine(dir, "sentence_bert_config.json");
        if (!File.Exists(p)) return null;
        var r = new ConfigReader(ConfigReader.Load(p), p);
        var v = r.IntOrNull("max_seq_length");
        if (v is <= 0) throw r.Error("max_seq_length", $"must be positive, got {v}");
        return v;
    }

    private static IReadOnlyList<PoolingMode> ReadPooling(string path)
    {
        var r = new ConfigReader(ConfigReader.Load(path), path);
        if (r.Bool("pooling_mode_weightedmean_tokens", false))
            throw new UnsupportedModelException($"{path}: field 'pooling_mode_weightedmean_tokens': weighted mean pooling is not supported");
        if (r.String("pooling_mode") is string mode) // newer sentence-transformers may write the mode as one string
        {
            return mode switch
            {
                "cls" => [PoolingMode.Cls],
                "mean" => [PoolingMode.Mean],
                "max" => [PoolingMode.Max],
                "mean_sqrt_len_tokens" => [PoolingMode.MeanSqrtLen],
                "lasttoken" => [PoolingMode.LastToken],
                _ => throw new UnsupportedModelException($"{path}: field 'pooling_mode': '{mode}' is not supported (cls, mean, max, mean_sqrt_len_tokens, lasttoken are)"),
            };
        }
        var modes = new List<PoolingMode>();
        if (r.Bool("pooling_mode_cls_token", false)) modes.Add(PoolingMode.Cls);
        if (r.Bool("pooling_mode_max_tokens", false)) modes.Add(PoolingMode.Max);
        if (r.Bool("pooling_mode_mean_tokens", false)) modes.Add(PoolingMode.Mean);
        if (r.Bool("pooling_mode_mean_sqrt_len_tokens", false)) modes.Add(PoolingMode.MeanSqrtLen);
        if (r.Bool("pooling_mode_lasttoken", false)) modes.Add(PoolingMode.LastToken);
        if (modes.Count == 0) throw r.Error("pooling_mode_mean_tokens", "no pooling mode is enabled; set one of the pooling_mode_* fields to true");
        return modes;
    }

    /// <summary>
    /// Pools hidden states <c>[batch, seq, dim]</c> with the attention mask <c>[batch, seq]</c> (1 = real token) into one
    /// vector per row (<c>dim × modes</c> wide), normalized when the pipeline says so. Accumulates in float64.
    /// </summary>
    public float[][] Pool(ReadOnlySpan<float> hidden, ReadOnlySpan<float> mask, int batch, int seq, int dim)
    {
        if (hidden.Length != (long)batch * seq * dim) throw new ArgumentException($"hidden has {hidden.Length} values, expected {batch}×{seq}×{dim}", nameof(hidden));
        if (mask.Length != batch * seq) throw new ArgumentException($"mask has {mask.Length} values, expected {batch}×{seq}", nameof(mask));
        var result = new float[batch][];
        var acc = new double[dim];
        for (int b = 0; b < batch; b++)
        {
            var row = result[b] = new float[dim * Pooling.Count];
            var h = hidden.Slice(b * seq * dim, seq * dim);
            var m = mask.Slice(b * seq, seq);
            int count = 0, last = 0;
            for (int s = 0; s < seq; s++) if (m[s] != 0) { count++; last = s; }
            for (int k = 0; k < Pooling.Count; k++)
            {
                var dst = row.AsSpan(k * dim, dim);
                switch (Pooling[k])
                {
                    case PoolingMode.Cls: h[..dim].CopyTo(dst); break;
                    case PoolingMode.LastToken: h.Slice(last * dim, dim).CopyTo(dst); break;
                    case PoolingMode.Max:
                        dst.Fill(-1e9f); // Pooling.py sets padded positions to -1e9 before the max
                        for (int s = 0; s < seq; s++)
                        {
                            if (m[s] == 0) continue;
                            var t = h.Slice(s * dim, dim);
                            for (int d = 0; d < dim; d++) dst[d] = Math.Max(dst[d], t[d]);
                        }
                        break;
                    default:
                        Array.Clear(acc);
                        for (int s = 0; s < seq; s++)
                        {
                            if (m[s] == 0) continue;
                            var t = h.Slice(s * dim, dim);
                            for (int d = 0; d < dim; d++) acc[d] += t[d];
                        }
                        double div = Pooling[k] == PoolingMode.Mean ? Math.Max(count, 1e-9) : Math.Sqrt(Math.Max(count, 1e-9));
                        for (int d = 0; d < dim; d++) dst[d] = (float)(acc[d] / div);
                        break;
                }
            }
            if (Normalize)
            {
                double n = 0;
                foreach (var x in row) n += (double)x * x;
                var inv = 1 / Math.Max(Math.Sqrt(n), 1e-12);
                for (int d = 0; d < row.Length; d++) row[d] = (float)(row[d] * inv);
            }
        }
        return result;
    }
}
