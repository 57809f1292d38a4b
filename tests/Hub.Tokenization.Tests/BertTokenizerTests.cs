using System.Text.Json;
using Hub.Tests;
using Hub.Tokenization;

namespace Hub.Tokenization.Tests;

public sealed class BertTokenizerTests
{
    private static int[] Flat(JsonElement rows) => rows.EnumerateArray().SelectMany(r => r.EnumerateArray().Select(x => x.GetInt32())).ToArray();

    [SkippableFact]
    public void MiniLM_golden_cases_give_identical_tokens_ids_masks_and_types()
    {
        var dir = SharedDir.Require("models/sentence-transformers/all-MiniLM-L6-v2");
        var tok = Assert.IsType<BertWordPieceTokenizer>(AutoTokenizer.FromPretrained(dir));
        var golden = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "golden.json"))).RootElement;
        int n = 0;
        foreach (var c in golden.GetProperty("cases").EnumerateArray())
        {
            var texts = c.GetProperty("texts").EnumerateArray().Select(t => t.GetString()!).ToList();
            int? max = c.GetProperty("max_length").ValueKind == JsonValueKind.Null ? null : c.GetProperty("max_length").GetInt32();
            var batch = tok.EncodeBatch(texts, maxLength: max);
            var shape = c.GetProperty("shape").EnumerateArray().Select(x => x.GetInt32()).ToArray();
            Assert.Equal(shape[0], batch.Batch);
            Assert.Equal(shape[1], batch.SeqLen);
            Assert.Equal(Flat(c.GetProperty("input_ids")), batch.InputIds);
            Assert.Equal(Flat(c.GetProperty("attention_mask")), batch.AttentionMask);
            Assert.Equal(Flat(c.GetProperty("token_type_ids")), batch.TokenTypeIds);
            var tokens = c.GetProperty("tokens").EnumerateArray().ToArray();
            for (int b = 0; b < texts.Count; b++)
            {
                var expected = tokens[b].EnumerateArray().Select(t => t.GetString()!).Where(t => t is not "[CLS]" and not "[SEP]" and not "[PAD]").ToArray();
                var actual = tok.Tokenize(texts[b]);
                Assert.Equal(expected, actual.Take(expected.Length));
                if (max is null) Assert.Equal(expected.Length, actual.Length);
            }
            n++;
        }
        Assert.Equal(4, n);
        Assert.Equal(new[] { "cafe", "de", "##ja", "vu" }, tok.Tokenize("Café déjà vu"));
    }

    [SkippableFact]
    public void Bert_tiny_cls_golden_including_the_pair_row()
    {
        var dir = SharedDir.Require("fixtures/bert-tiny-cls");
        var tok = Assert.IsType<BertWordPieceTokenizer>(AutoTokenizer.FromPretrained(dir));
        var golden = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "golden.json"))).RootElement;
        foreach (var c in golden.GetProperty("cases").EnumerateArray())
        {
            var texts = new List<string>();
            var pairs = new List<string?>();
            foreach (var t in c.GetProperty("text").EnumerateArray())
            {
                if (t.ValueKind == JsonValueKind.Array) { texts.Add(t[0].GetString()!); pairs.Add(t[1].GetString()); }
                else { texts.Add(t.GetString()!); pairs.Add(null); }
            }
            var batch = tok.EncodeBatch(texts, pairs);
            Assert.Equal(Flat(c.GetProperty("input_ids")), batch.InputIds);
            Assert.Equal(Flat(c.GetProperty("attention_mask")), batch.AttentionMask);
            Assert.Equal(Flat(c.GetProperty("token_type_ids")), batch.TokenTypeIds);
        }
    }

    [SkippableFact]
    public void Truncation_strategies_and_too_long_input_without_truncation()
    {
        var tok = BertWordPieceTokenizer.FromPretrained(SharedDir.Require("fixtures/bert-tiny-cls"));
        var longText = string.Join(" ", Enumerable.Repeat("movie", 40));
        var e = Assert.Throws<ModelInputException>(() => tok.EncodeBatch([longText], maxLength: 16, truncation: TruncationStrategy.DoNotTruncate));
        Assert.Contains("16", e.Message);
        var b = tok.EncodeBatch([longText], ["short pair"], maxLength: 16);
        Assert.Equal(16, b.SeqLen);
        Assert.Equal(tok.ClsId, b.InputIds[0]);
        Assert.Equal(tok.SepId, b.InputIds[15]);
        Assert.Equal(3, b.TokenTypeIds.Count(t => t == 1));           // "short pair [SEP]" kept whole: longest-first cuts the long side
        var only2 = tok.EncodeBatch([longText], [longText], maxLength: 300, truncation: TruncationStrategy.OnlySecond);
        Assert.Equal(83, only2.SeqLen);
        Assert.Throws<ModelInputException>(() => tok.EncodeBatch(["a b c", "a"], padding: false));
        Assert.Equal("this movie", tok.Decode(tok.Encode("This movie"), skipSpecialTokens: true));
        Assert.Throws<ModelInputException>(() => tok.Decode(new[] { tok.VocabSize }));
    }
}
