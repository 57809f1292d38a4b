using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Hub.Models;
using Hub.Weights;

namespace Hub.Converters;

/// <summary>
/// Meta's original LLaMA release layout (<c>params.json</c> + <c>consolidated.NN.pth</c>, one file per model-parallel
/// rank) presented as a Hugging Face LLaMA checkpoint: shards are merged along the dimension each layer was split on
/// (as transformers' <c>convert_llama_weights_to_hf.py</c> does), lazily, and wq/wk keep Meta's interleaved-pair row
/// order (<see cref="WeightLayout.InterleavedRope"/>); the LLaMA graph builder applies the per-head permutation.
/// </summary>
public static partial class MetaCheckpoint
{
    [GeneratedRegex(@"^consolidated\.(\d+)\.pth$")]
    private static partial Regex ShardName();

    /// <summary>Opens the release in <paramref name="dir"/>.</summary>
    public static ModelSource Open(string dir)
    {
        if (!Directory.Exists(dir)) throw new ModelFileNotFoundException(dir, "the model folder does not exist");
        var paramsPath = Path.Combine(dir, "params.json");
        var json = LoadJson(paramsPath);

        var numbered = new SortedDictionary<int, string>();
        foreach (var f in Directory.EnumerateFiles(dir, "consolidated.*.pth"))
        {
            var m = ShardName().Match(Path.GetFileName(f));
            if (m.Success) numbered[int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)] = f;
        }
        if (numbered.Count == 0)
            throw new ModelFileNotFoundException(Path.Combine(dir, "consolidated.00.pth"), $"a Meta-layout folder needs consolidated.NN.pth weights beside {paramsPath}");
        for (int i = 0; i < numbered.Keys.Max() + 1; i++)
            if (!numbered.ContainsKey(i))
                throw new ModelFileNotFoundException(Path.Combine(dir, $"consolidated.{i:00}.pth"),
                    $"model-parallel shard {i} is missing (found {string.Join(", ", numbered.Values.Select(Path.GetFileName))}); download every consolidated.NN.pth");

        var shards = new List<ITensorSource>();
        try
        {
            foreach (var f in numbered.Values) shards.Add(TorchCheckpoint.Open(f));
            var hp = ReadParams(json, paramsPath, shards[0]);
            int expected = MetaLayout.ExpectedShardCount(shards[0], hp);
            if (expected != shards.Count)
            {
                var missing = Enumerable.Range(0, expected).Where(i => !numbered.ContainsKey(i)).Select(i => $"consolidated.{i:00}.pth").ToList();
                if (missing.Count > 0)
                    throw new ModelFileNotFoundException(Path.Combine(dir, missing[0]),
                        $"{paramsPath} declares dim {hp.Dim} with {hp.Heads} heads, but consolidated.00.pth holds 1/{expected} of wq: the checkpoint was saved with {expected} model-parallel shards and {shards.Count} are present (missing {string.Join(", ", missing)})");
                throw new CheckpointFormatException(shards[0].Location, "layers.0.attention.wq.weight",
                    $"shard layout implies {expected} model-parallel shards but {shards.Count} consolidated.NN.pth files are present; they do not belong together");
            }
            var src = MetaLayout.Build(dir, shards, hp, paramsPath);
            foreach (var s in shards) src.Own(s);
            src.TryGetInfo("model.embed_tokens.weight", out var emb);
            // Meta's LLaMA 1/2 releases use a SentencePiece vocabulary with <s> = 1, </s> = 2; Llama 3's tiktoken
            // vocabulary (128256 entries) uses <|begin_of_text|> = 128000, <|end_of_text|> = 128001.
            (int bos, int eos) = hp.Vocab >= 128000 ? (128000, 128001) : (1, 2);
            return new ModelSource
            {
                Directory = dir,
                Config = hp.ToHfConfig(emb.DType, bos, eos, "meta"),
                ConfigPath = paramsPath,
                Weights = src,
                Layout = WeightLayout.InterleavedRope,
            };
        }
        catch
        {
            foreach (var s in shards) s.Dispose();
            throw;
        }
    }

    internal static JsonObject LoadJson(string path)
    {
        if (!File.Exists(path)) throw new ModelFileNotFoundException(path, "the original layout needs its parameters file");
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new ConfigException(path, "(document)", "not a JSON object");
        }
        catch (JsonException e)
        {
            throw new ConfigException(path, "(document)", $"not valid JSON: {e.Message}", e);
        }
    }

    internal static int Int(JsonObject j, string path, string field, int? def = null)
    {
        var n = j[field];
        if (n is null) return def ?? throw new ConfigException(path, field, "required field is missing");
        try
        {
            double d = n.GetValue<double>();
            if (d != Math.Floor(d) || d > int.MaxValue || d < int.MinValue) throw new FormatException();
            return (int)d;
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException)
        {
            throw new ConfigException(path, field, $"must be an integer, found {n.ToJsonString()}", e);
        }
    }

    internal static double? Double(JsonObject j, string path, string field)
    {
        var n = j[field];
        if (n is null) return null;
        try { return n.GetValue<double>(); }
        catch (Exception e) when (e is FormatException or InvalidOperationException)
        { throw new ConfigException(path, field, $"must be a number, found {n.ToJsonString()}", e); }
    }

    /// <summary>Reads Meta's params.json (or FlagAI's config.json, which uses the same keys).</summary>
    internal static LlamaHyperParams ReadParams(JsonObject j, string path, ITensorSource shard0, int defaultMaxPositions = 2048, double? fixedTheta = null)
    {
        int dim = Int(j, path, "dim");
        int layers = Int(j, path, "n_layers");
        int heads = Int(j, path, "n_heads");
        int kv = Int(j, path, "n_kv_heads", heads);
        if (dim <= 0) throw new ConfigException(path, "dim", $"must be positive, found {dim}");
        if (layers <= 0) throw new ConfigException(path, "n_layers", $"must be positive, found {layers}");
        if (heads <= 0 || dim % heads != 0) throw new ConfigException(path, "n_heads", $"{heads} must be positive and divide dim {dim}");
        if (kv <= 0 || heads % kv != 0) throw new ConfigException(path, "n_kv_heads", $"{kv} must be positive and divide n_heads {heads}");
        if ((dim / heads) % 2 != 0) throw new ConfigException(path, "n_heads", $"head size {dim / heads} must be even for RoPE");
        int multipleOf = Int(j, path, "multiple_of", 256);
        if (multipleOf <= 0) throw new ConfigException(path, "multiple_of", $"must be positive, found {multipleOf}");
        int hidden = MetaLayout_Hidden(dim, multipleOf, Double(j, path, "ffn_dim_multiplier"));

        int vocab = Int(j, path, "vocab_size", -1);
        if (vocab <= 0)
        {
            // Meta's LLaMA 1 params.json says -1: the tokenizer decides; take it from the embedding.
            if (!shard0.TryGetInfo("tok_embeddings.weight", out var emb) || emb.Shape.Rank != 2)
                throw new ConfigException(path, "vocab_size", "is not positive and the checkpoint has no tok_embeddings.weight to infer it from");
            vocab = (int)emb.Shape[0];
        }
        double eps = Double(j, path, "norm_eps") ?? 1e-5;
        double theta = fixedTheta ?? Double(j, path, "rope_theta") ?? 10000.0;
        int maxPos = Int(j, path, "max_seq_len", defaultMaxPositions);
        bool tied = !shard0.TryGetInfo("output.weight", out _);
        return new LlamaHyperParams(dim, layers, heads, kv, hidden, vocab, eps, theta, maxPos, tied);
    }

    private static int MetaLayout_Hidden(int dim, int multipleOf, double? mult) => LlamaHyperParams.FfnWidth(dim, multipleOf, mult);
}
