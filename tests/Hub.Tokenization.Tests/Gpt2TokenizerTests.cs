using System.Text;
using System.Text.Json;
using Hub.Tests;
using Hub.Tokenization;
using SharpToken;

namespace Hub.Tokenization.Tests;

/// <summary>Loads GPT-2's real vocab once for the class (50k merges).</summary>
public sealed class Gpt2Fixture
{
    public HubTokenizer? Tokenizer { get; }
    public string? Dir { get; }

    public Gpt2Fixture()
    {
        var root = SharedDir.Root;
        if (root is null) return;
        Dir = Path.Combine(root, "tokenizers", "gpt2");
        if (File.Exists(Path.Combine(Dir, "vocab.json"))) Tokenizer = AutoTokenizer.FromPretrained(Dir);
    }

    public HubTokenizer Require()
    {
        SharedDir.Require("tokenizers/gpt2/vocab.json");
        return Tokenizer!;
    }
}

public sealed class Gpt2TokenizerTests : IClassFixture<Gpt2Fixture>
{
    private readonly Gpt2Fixture _fx;
    public Gpt2TokenizerTests(Gpt2Fixture fx) => _fx = fx;

    /// <summary>Deterministic varied strings: scripts, emoji, whitespace runs, digits, contractions, punctuation.</summary>
    public static List<string> VariedStrings(int count = 300)
    {
        string[] parts =
        [
            "Hello", "world", "the", "The", " quick", "brown", "fox", "can't", "I'm", "we're", "they'll", "you've", "she'd", "it's",
            "'s", "'t", "'re", "'LL", "O'Neil", "rock'n'roll", "北京", "为什么是中国的首都", "你好，世界！", "日本語のテキスト", "カタカナ",
            "한국어", "Привет", "мир", "مرحبا", "नमस्ते", "ελληνικά", "naïve", "café", "Ångström", "e\u0301", "ﬁ", "🙂", "👍🏽",
            "👨‍👩‍👧‍👦", "🇫🇷", "❤️", "🤖", "1", "12", "123", "12345", "3.14159", "1,000,000", "2024-06-01", "0x1F", "١٢٣",
            " ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n ", "    ", "\u00a0", "\u3000", "!", "?!", "...", "--", "—", "«»",
            "(x)", "[y]", "{z}", "<b>", "$100", "50%", "#tag", "@user", "a_b", "snake_case", "CamelCase", "http://example.com/a?b=c",
            "def f(x):", "return x**2", "    # comment", "C++", "\\path\\to", "\"quoted\"", "'single'", "`tick`", "~~", "^_^", "¯\\_(ツ)_/¯",
        ];
        var rng = new Random(20240601);
        var list = new List<string>(count);
        for (int i = 0; i < count; i++)
        {
            var sb = new StringBuilder();
            int n = 1 + rng.Next(8);
            for (int k = 0; k < n; k++)
            {
                if (k > 0 && rng.Next(3) > 0) sb.Append(rng.Next(5) == 0 ? "  " : " ");
                sb.Append(parts[rng.Next(parts.Length)]);
            }
            list.Add(sb.ToString());
        }
        list.AddRange(parts);
        return list;
    }

    [SkippableFact]
    public void Encodes_identically_to_SharpToken_r50k_base_on_varied_strings()
    {
        var tok = _fx.Require();
        var reference = GptEncoding.GetEncoding("r50k_base");
        var failures = new List<string>();
        foreach (var s in VariedStrings())
        {
            var expected = reference.Encode(s).ToArray();
            var actual = tok.Encode(s);
            if (!expected.SequenceEqual(actual))
                failures.Add($"{JsonSerializer.Serialize(s)}: expected [{string.Join(",", expected)}] got [{string.Join(",", actual)}]");
        }
        Assert.True(failures.Count == 0, $"{failures.Count} mismatches:\n" + string.Join("\n", failures.Take(10)));
    }

    [SkippableFact]
    public void Matches_expected_encodings_including_endoftext_special_row()
    {
        var tok = _fx.Require();
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(_fx.Dir!, "expected_encodings.json")));
        int rows = 0;
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            var text = c.GetProperty("text").GetString()!;
            var ids = c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Assert.Equal(ids, tok.Encode(text));
            Assert.Equal(text, tok.Decode(ids));
            rows++;
        }
        Assert.True(rows >= 14);
        Assert.Equal(new[] { 50256 }, tok.Encode("<|endoftext|>"));
    }

    [SkippableFact]
    public void Known_ids_special_ids_and_metadata()
    {
        var tok = _fx.Require();
        Assert.IsType<ByteLevelBpeTokenizer>(tok);
        Assert.Equal(new[] { 15496, 11, 616, 3290, 318, 13779 }, tok.Encode("Hello, my dog is cute"));
        Assert.Equal(50257, tok.VocabSize);
        Assert.Equal(50256, tok.BosTokenId);
        Assert.Equal(new[] { 50256 }, tok.EosTokenIds);
        Assert.Equal(50256, tok.SpecialTokens["<|endoftext|>"]);
        Assert.Equal(1024, ((ByteLevelBpeTokenizer)tok).MaxLength);
        Assert.Equal(new[] { 15496, 50256, 995 }, tok.Encode("Hello<|endoftext|> world"));
        Assert.Equal("Hello world", tok.Decode(new[] { 15496, 50256, 995 }, skipSpecialTokens: true));
        Assert.Equal("Hello<|endoftext|> world", tok.Decode(new[] { 15496, 50256, 995 }));
        Assert.Equal("Ġworld", tok.IdToToken(995));
        Assert.Equal(995, tok.TokenToId("Ġworld"));
    }

    [SkippableFact]
    public void Decode_round_trips_varied_strings()
    {
        var tok = _fx.Require();
        foreach (var s in VariedStrings(120)) Assert.Equal(s, tok.Decode(tok.Encode(s)));
    }

    [SkippableFact]
    public void Decoding_an_id_outside_the_vocabulary_names_id_and_size()
    {
        var tok = _fx.Require();
        var e = Assert.Throws<ModelInputException>(() => tok.Decode(new[] { 15496, 50257 }));
        Assert.Contains("50257", e.Message);
        Assert.Contains("size 50257", e.Message);
        Assert.Throws<ModelInputException>(() => tok.Decode(new[] { -1 }));
    }

    [SkippableFact]
    public void Streaming_decode_never_splits_characters_and_concatenates_to_full_decode()
    {
        var tok = _fx.Require();
        foreach (var text in new[] { "北京为什么是中国的首都? 🙂👍🏽 done", "家庭: 👨‍👩‍👧‍👦 and 🇫🇷 ❤️!", "naïve café 日本語" })
        {
            var ids = tok.Encode(text);
            Assert.Contains(ids, id => tok.Decode(new[] { id }).Contains('\uFFFD'));   // some emoji/CJK bytes span tokens
            var dec = tok.CreateStreamingDecoder(skipSpecialTokens: false);
            var pieces = StreamHelper.Run(dec, ids).ToList();
            foreach (var p in pieces)
            {
                Assert.DoesNotContain('\uFFFD', p);
                if (p.Length > 0) Assert.False(char.IsHighSurrogate(p[^1]), "piece ends in half a surrogate pair");
            }
            Assert.Equal(tok.Decode(ids), string.Concat(pieces));
            Assert.Equal(text, string.Concat(pieces));
        }
    }

    [SkippableFact]
    public void Streaming_decode_keeps_a_zwj_emoji_sequence_whole()
    {
        var tok = _fx.Require();
        var family = "👨‍👩‍👧";
        var ids = tok.Encode("a " + family + " b");
        var dec = tok.CreateStreamingDecoder();
        var pieces = StreamHelper.Run(dec, ids).Where(p => p.Length > 0).ToList();
        Assert.Contains(pieces, p => p.Contains(family));
    }
}
