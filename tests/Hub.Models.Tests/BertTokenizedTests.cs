using System.Text.Json.Nodes;
using Hub.Tests;
using Hub.Tokenization;

namespace Hub.Models.Tests;

/// <summary>The full text path: WordPiece tokenizer → BERT graph on the runtime → goldens.</summary>
public sealed class BertTokenizedTests
{
    private static (List<string> Texts, List<string?> Pairs) TextsOf(JsonNode c, string field)
    {
        var texts = new List<string>();
        var pairs = new List<string?>();
        foreach (var t in c[field]!.AsArray())
        {
            if (t is JsonArray pair) { texts.Add((string)pair[0]!); pairs.Add((string)pair[1]!); }
            else { texts.Add((string)t!); pairs.Add(null); }
        }
        return (texts, pairs);
    }

    private static Dictionary<string, BertTensor> Inputs(BertBatch batch)
    {
        int[] shape = [batch.Batch, batch.SeqLen];
        var pos = new float[batch.InputIds.Length];
        for (int i = 0; i < pos.Length; i++) pos[i] = i % batch.SeqLen;
        return new()
        {
            ["input_ids"] = new BertTensor(Array.ConvertAll(batch.InputIds, x => (float)x), shape),
            ["token_type_ids"] = new BertTensor(Array.ConvertAll(batch.TokenTypeIds, x => (float)x), shape),
            ["attention_mask"] = new BertTensor(Array.ConvertAll(batch.AttentionMask, x => (float)x), shape),
            ["position_ids"] = new BertTensor(pos, shape),
        };
    }

    [SkippableFact]
    public void Tiny_classifier_through_the_tokenizer_matches_golden_ids_and_probabilities()
    {
        var dir = SharedDir.Require("fixtures/bert-tiny-cls");
        var tok = Assert.IsType<BertWordPieceTokenizer>(AutoTokenizer.FromPretrained(dir));
        using var model = new CompiledBert(BertModelTests.Export(dir));
        foreach (var c in BertGolden.Load(Path.Combine(dir, "golden.json"))["cases"]!.AsArray())
        {
            var (texts, pairs) = TextsOf(c!, "text");
            var batch = tok.EncodeBatch(texts, pairs.Any(p => p is not null) ? pairs : null);
            Assert.Equal(BertGolden.Flat(c!["input_ids"]!), Array.ConvertAll(batch.InputIds, x => (float)x));
            Assert.Equal(BertGolden.Flat(c["token_type_ids"]!), Array.ConvertAll(batch.TokenTypeIds, x => (float)x));
            var logits = model.Run(Inputs(batch))["logits"].Data;
            Assert.True(BertGolden.MaxAbsDiff(BertOutputs.Softmax(logits, 3), BertGolden.Flat(c["probs"]!)) < 1e-4);
        }
    }

    [SkippableFact]
    public void MiniLm_through_the_tokenizer_gives_golden_ids_and_embeddings()
    {
        var dir = SharedDir.Require("models/sentence-transformers/all-MiniLM-L6-v2");
        var tok = Assert.IsType<BertWordPieceTokenizer>(AutoTokenizer.FromPretrained(dir));
        var pipeline = Bert.SentenceEmbeddingConfig.Load(dir);
        using var model = new CompiledBert(BertModelTests.Export(dir));
        foreach (var c in BertGolden.Load(Path.Combine(dir, "golden.json"))["cases"]!.AsArray())
        {
            var (texts, _) = TextsOf(c!, "texts");
            var batch = tok.EncodeBatch(texts, null, (int?)c!["max_length"] ?? pipeline.MaxSeqLength);
            Assert.Equal(BertGolden.Flat(c["input_ids"]!), Array.ConvertAll(batch.InputIds, x => (float)x));
            Assert.Equal(BertGolden.Flat(c["attention_mask"]!), Array.ConvertAll(batch.AttentionMask, x => (float)x));
            var h = model.Run(Inputs(batch))["last_hidden_state"].Data;
            var emb = pipeline.Pool(h, Array.ConvertAll(batch.AttentionMask, x => (float)x), batch.Batch, batch.SeqLen, 384);
            var want = BertGolden.Flat(c["sentence_embedding"]!);
            for (int b = 0; b < batch.Batch; b++)
                Assert.True(BertOutputs.Cosine(emb[b], want.AsSpan(b * 384, 384)) >= 0.99999, $"{c["name"]}[{b}]");
        }
    }

    [SkippableFact]
    public void Text_longer_than_the_model_with_truncation_off_throws_model_input_exception()
    {
        var dir = SharedDir.Require("fixtures/bert-tiny-cls");
        var tok = Assert.IsType<BertWordPieceTokenizer>(AutoTokenizer.FromPretrained(dir));
        var longText = string.Join(" ", Enumerable.Repeat("movie", 600));
        Assert.Throws<ModelInputException>(() => tok.EncodeBatch([longText], null, 512, TruncationStrategy.DoNotTruncate));
        // With truncation on, the row is cut to the model's 512 positions and runs.
        var batch = tok.EncodeBatch([longText], null, 512);
        Assert.Equal(512, batch.SeqLen);
    }
}
