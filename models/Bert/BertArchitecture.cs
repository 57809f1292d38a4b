// BERT encoder graph, following transformers' modeling_bert.py (BertModel, BertForSequenceClassification) and the
// paper (Devlin et al. 2018): word + position + token_type embeddings → LayerNorm → N post-LN layers → optional
// tanh pooler on [CLS] → optional classifier. Structurally pruned models load: after transformers' prune_heads a
// layer's query/key/value have fewer rows and attention.output.dense fewer columns (pruned_heads in config.json),
// and FFN-pruned layers have narrower intermediate weights (their width is taken from the weights).
// Sentence-transformers repos (modules.json) are plain BertModel folders here; their pooling runs on the host.
// Not supported: relative position embeddings, decoder mode / cross-attention, the MLM/NSP heads.
using System.Text.Json.Nodes;
using Hub.IR;
using Hub.Weights;

namespace Hub.Models.Bert;

/// <summary>BERT (BertModel, BertForSequenceClassification, sentence-transformers BERT encoders).</summary>
public sealed class BertArchitecture : IModelArchitecture
{
    /// <inheritdoc/>
    public string Name => "bert";

    /// <inheritdoc/>
    public bool Matches(JsonObject config) => (string?)config["model_type"] == "bert";

    /// <inheritdoc/>
    public ModelTask TaskOf(JsonObject config) =>
        config["architectures"] is JsonArray a && a.Count > 0 && ((string?)a[0])?.EndsWith("ForSequenceClassification", StringComparison.Ordinal) == true
            ? ModelTask.SequenceClassification
            : ModelTask.TextEncoder;

    /// <inheritdoc/>
    public ModelExport Build(ModelSource source, ExportSettings settings)
    {
        var cfg = BertConfig.Parse(source.Config, source.ConfigPath);
        return Build(cfg, new WeightBinder(source.Weights));
    }

    /// <summary>Builds the graph for a parsed config; reads tensor metadata only.</summary>
    public static ModelExport Build(BertConfig cfg, WeightBinder root)
    {
        // BertModel checkpoints have no prefix; BertFor* heads wrap the encoder as "bert.".
        var w = root.Has("bert.embeddings.word_embeddings.weight") ? root.Scope("bert") : root;
        int hidden = cfg.HiddenSize, hd = cfg.HeadDim;
        var g = new GraphBuilder("bert");

        var ids = g.Input("input_ids", DType.I32, "batch", "seq");
        var types = g.Input("token_type_ids", DType.I32, "batch", "seq");
        var mask = g.Input("attention_mask", DType.F32, "batch", "seq");
        var positions = g.Input("position_ids", DType.I32, "batch", "seq");

        // Embeddings.  [B, S, H]
        var emb = w.Scope("embeddings");
        var wordTable = g.Weight(emb.Full("word_embeddings.weight"), emb.Get("word_embeddings.weight", cfg.VocabSize, hidden), WeightKind.Embedding);
        var posTable = g.Weight(emb.Full("position_embeddings.weight"), emb.Get("position_embeddings.weight", cfg.MaxPositionEmbeddings, hidden), WeightKind.Embedding);
        var typeTable = g.Weight(emb.Full("token_type_embeddings.weight"), emb.Get("token_type_embeddings.weight", cfg.TypeVocabSize, hidden), WeightKind.Embedding);
        var words = g.Op(Ops.Embedding, "embeddings.words", [ids, wordTable]);
        var pos = g.Op(Ops.Embedding, "embeddings.positions", [positions, posTable]);
        var tt = g.Op(Ops.Embedding, "embeddings.token_types", [types, typeTable]);
        var sum = g.Op(Ops.Add, "embeddings.sum", [g.Op(Ops.Add, "embeddings.sum_wp", [words, pos]), tt]);
        var h = BuildNorm(g, emb, "LayerNorm", "embeddings.out", sum, hidden, cfg.LayerNormEps);

        // The last layer's output node carries the conventional output name.
        for (int i = 0; i < cfg.NumHiddenLayers; i++)
            h = BuildLayer(g, cfg, w.Scope($"encoder.layer.{i}"), i, h, mask, hd,
                i == cfg.NumHiddenLayers - 1 ? "last_hidden_state" : $"layer.{i}.out");
        g.Output(h, DType.F32, "batch", "seq", hidden);

        string? pooled = null;
        var pool = w.Scope("pooler");
        if (pool.Has("dense.weight"))
        {
            // tanh(dense(h[:, 0]))  [B, H]
            var cls = g.Op(Ops.Slice, "pooler.cls", [h], new { axis = 1, start = 0, end = 1 });
            var dense = g.Op(Ops.Linear, "pooler.dense", [cls, Matrix(g, pool, "dense.weight", hidden, hidden), Vector(g, pool, "dense.bias", hidden)]);
            pooled = g.Op(Ops.Tanh, "pooler_output", [dense]);
            g.Output(pooled, DType.F32, "batch", hidden);
        }

        if (cfg.IsSequenceClassification)
        {
            if (pooled is null)
                throw new CheckpointFormatException(root.Source.Location, pool.Full("dense.weight"),
                    "BertForSequenceClassification needs the pooler, but the checkpoint has none; export the encoder as BertModel instead");
            var info = root.Info("classifier.weight");
            if (info.Shape.Rank != 2 || info.Shape[0] != cfg.NumLabels || info.Shape[1] != hidden)
                throw new ConfigException(cfg.Path, "num_labels",
                    $"the config has {cfg.NumLabels} labels (id2label/num_labels) but tensor 'classifier.weight' in {info.FilePath} has shape {info.Shape} " +
                    $"(expected [{cfg.NumLabels}, {hidden}]); fix id2label/num_labels in config.json to match the classifier");
            // The classifier reads the pooled [CLS] vector (dropout is the identity at inference).  [B, num_labels]
            var logits = g.Op(Ops.Linear, "logits", [pooled, Matrix(g, root, "classifier.weight", cfg.NumLabels, hidden), Vector(g, root, "classifier.bias", cfg.NumLabels)]);
            g.Output(logits, DType.F32, "batch", cfg.NumLabels);
        }

        var md = g.Metadata;
        md["task"] = cfg.IsSequenceClassification ? "sequence_classification" : "text_encoder";
        md["max_position_embeddings"] = cfg.MaxPositionEmbeddings;
        md["pad_token_id"] = cfg.PadTokenId;
        md["type_vocab_size"] = cfg.TypeVocabSize;
        md["hidden_size"] = hidden;
        md["has_pooler"] = pooled is not null;
        if (cfg.IsSequenceClassification)
        {
            md["num_labels"] = cfg.NumLabels;
            var labels = new JsonObject();
            for (int i = 0; i < cfg.NumLabels; i++) labels[i.ToString(System.Globalization.CultureInfo.InvariantCulture)] = cfg.Id2Label[i];
            md["id2label"] = labels;
            md["problem_type"] = cfg.ProblemTypeText;
        }
        return g.Build();
    }

    // One post-LN encoder layer: h = LN(h + attn(h)); h = LN(h + ffn(h)).  [B, S, H] → [B, S, H]
    private static string BuildLayer(GraphBuilder g, BertConfig cfg, WeightBinder lw, int i, string h, string mask, int hd, string outName)
    {
        int hidden = cfg.HiddenSize;
        int heads = cfg.HeadsOf(i);
        int width = heads * hd; // all_head_size after pruning
        var p = $"layer.{i}";
        var self = lw.Scope("attention.self");
        var qInfo = self.Info("query.weight");
        if (qInfo.Shape.Rank != 2 || qInfo.Shape[0] != width)
            throw new ConfigException(cfg.Path, "pruned_heads",
                $"layer {i} should keep {heads} of {cfg.NumAttentionHeads} heads ({width} rows of {hd} per head), but tensor '{qInfo.Name}' in {qInfo.FilePath} has shape {qInfo.Shape}; " +
                "set pruned_heads in config.json to the heads removed from this checkpoint");

        var ao = lw.Scope("attention.output");
        string attnOut;
        if (heads == 0)
        {
            // Every head pruned: the attention block reduces to the output dense's bias.
            attnOut = g.Op(Ops.Add, $"{p}.attn.residual", [h, Vector(g, ao, "dense.bias", hidden)]);
        }
        else
        {
            // Fused q/k/v projection: one GEMM, split along features.  [B, S, 3·width]
            var qkvW = LazyTensor.ConcatRows($"{self.Full("{query,key,value}.weight")}",
                self.Get("query.weight", width, hidden), self.Get("key.weight", width, hidden), self.Get("value.weight", width, hidden));
            var qkvB = LazyTensor.ConcatRows($"{self.Full("{query,key,value}.bias")}",
                self.Get("query.bias", width), self.Get("key.bias", width), self.Get("value.bias", width));
            var qkv = g.Op(Ops.Linear, $"{p}.qkv", [h,
                g.Weight(self.Full("qkv.weight"), qkvW, WeightKind.Matrix),
                g.Weight(self.Full("qkv.bias"), qkvB, WeightKind.Vector)]);
            var parts = g.OpMulti(Ops.Split, $"{p}.qkv_split", [qkv], 3, new { sizes = new[] { width, width, width } });
            // Bidirectional attention; padded keys are dropped through the mask.  [B, S, width]
            var ctx = g.Op(Ops.Attention, $"{p}.attn", [parts[0], parts[1], parts[2], mask],
                new { heads, kv_heads = heads, head_dim = hd, causal = false, scale = 1.0 / Math.Sqrt(hd) });
            var dense = g.Op(Ops.Linear, $"{p}.attn.dense", [ctx, Matrix(g, ao, "dense.weight", hidden, width), Vector(g, ao, "dense.bias", hidden)]);
            attnOut = g.Op(Ops.Add, $"{p}.attn.residual", [dense, h]);
        }
        h = BuildNorm(g, ao, "LayerNorm", $"{p}.attn.norm", attnOut, hidden, cfg.LayerNormEps);

        // Feed-forward; the width comes from the weights so FFN-pruned layers load.  [B, S, I]
        var inter = lw.Scope("intermediate");
        var iInfo = inter.Info("dense.weight");
        if (iInfo.Shape.Rank != 2 || iInfo.Shape[1] != hidden)
            throw new CheckpointFormatException(iInfo.FilePath, iInfo.Name, $"shape {iInfo.Shape} is not [intermediate, {hidden}]; check that config.json belongs to these weights");
        int ffn = (int)iInfo.Shape[0];
        var up = g.Op(Ops.Linear, $"{p}.ffn.up", [h, Matrix(g, inter, "dense.weight", ffn, hidden), Vector(g, inter, "dense.bias", ffn)]);
        var act = cfg.GeluApproximate is string approx
            ? g.Op(Ops.Gelu, $"{p}.ffn.act", [up], new { approximate = approx })
            : g.Op(cfg.HiddenAct == "relu" ? Ops.Relu : Ops.Silu, $"{p}.ffn.act", [up]);
        var o = lw.Scope("output");
        var down = g.Op(Ops.Linear, $"{p}.ffn.down", [act, Matrix(g, o, "dense.weight", hidden, ffn), Vector(g, o, "dense.bias", hidden)]);
        var res = g.Op(Ops.Add, $"{p}.ffn.residual", [down, h]);
        return BuildNorm(g, o, "LayerNorm", outName, res, hidden, cfg.LayerNormEps);
    }

    // LayerNorm with transformers' names, accepting the TF-era gamma/beta names old checkpoints carry.
    private static string BuildNorm(GraphBuilder g, WeightBinder w, string scope, string name, string x, int dim, float eps)
    {
        var n = w.Scope(scope);
        bool tf = !n.Has("weight") && n.Has("gamma");
        var gamma = g.Weight(n.Full("weight"), n.Get(tf ? "gamma" : "weight", dim), WeightKind.Vector);
        var beta = g.Weight(n.Full("bias"), n.Get(tf ? "beta" : "bias", dim), WeightKind.Vector);
        return g.Op(Ops.LayerNorm, name, [x, gamma, beta], new { eps });
    }

    private static string Matrix(GraphBuilder g, WeightBinder w, string name, long rows, long cols) =>
        g.Weight(w.Full(name), w.Get(name, rows, cols), WeightKind.Matrix);

    private static string Vector(GraphBuilder g, WeightBinder w, string name, long n) =>
        g.Weight(w.Full(name), w.Get(name, n), WeightKind.Vector);
}
