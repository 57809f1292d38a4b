using Hub.Tests;
using Hub.Tokenization;

namespace Hub.Tokenization.Tests;

/// <summary>SentencePieceModelWriter is the inverse of SentencePieceModel.Load.</summary>
public sealed class SentencePieceModelWriterTests : IDisposable
{
    private readonly string _dir = SharedDir.TempDir("spm-writer");

    public void Dispose() => Directory.Delete(_dir, true);

    private SentencePieceModel RoundTrip(byte[] proto)
    {
        var p = Path.Combine(_dir, $"{Guid.NewGuid():N}.model");
        File.WriteAllBytes(p, proto);
        return SentencePieceModel.Load(p);
    }

    private static void AssertSame(SentencePieceModel expected, SentencePieceModel actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected.Piece(i), actual.Piece(i));
            Assert.Equal(expected.Score(i), actual.Score(i));
            Assert.Equal(expected.Type(i), actual.Type(i));
        }
        Assert.Equal((expected.UnkId, expected.BosId, expected.EosId), (actual.UnkId, actual.BosId, actual.EosId));
    }

    [Fact]
    public void Written_pieces_scores_types_and_flags_parse_back()
    {
        string[] pieces = ["<unk>", "<s>", "</s>", "<0x41>", "<0xE2>", "▁", "t", "e", "a", "▁t", "ea", "▁tea", "é", "<user>", "x"];
        float[] scores = [0, 0, 0, 0, 0, -1, -2, -3, -4, -0.5f, -0.25f, -0.125f, -9.75f, 0, float.MinValue];
        PieceType[] types =
        [
            PieceType.Unknown, PieceType.Control, PieceType.Control, PieceType.Byte, PieceType.Byte,
            .. Enumerable.Repeat(PieceType.Normal, 8), PieceType.UserDefined, PieceType.Unused,
        ];
        var m = RoundTrip(SentencePieceModelWriter.Write(pieces, scores, types));
        Assert.Equal(pieces, Enumerable.Range(0, m.Count).Select(m.Piece));
        Assert.Equal(scores, Enumerable.Range(0, m.Count).Select(m.Score));
        Assert.Equal(types, Enumerable.Range(0, m.Count).Select(m.Type));
        Assert.Equal((0, 1, 2), (m.UnkId, m.BosId, m.EosId));
        Assert.Equal(2, m.ModelType);
        Assert.True(m.ByteFallback);
        Assert.True(m.AddDummyPrefix);
        Assert.False(m.RemoveExtraWhitespaces);
        Assert.True(m.EscapeWhitespaces);
        Assert.Equal("identity", m.NormalizerName);
        Assert.Equal(["▁tea", "<user>", "<0x41>"], m.EncodeToPieces("tea<user>A"));

        var other = RoundTrip(SentencePieceModelWriter.Write(pieces, scores, types, byteFallback: false, addDummyPrefix: false,
            removeExtraWhitespaces: true, escapeWhitespaces: false));
        Assert.False(other.ByteFallback);
        Assert.False(other.AddDummyPrefix);
        Assert.True(other.RemoveExtraWhitespaces);
        Assert.False(other.EscapeWhitespaces);
    }

    [SkippableFact]
    public void Real_tokenizer_model_survives_a_round_trip()
    {
        var src = SentencePieceModel.Load(Path.Combine(SharedDir.Require("fixtures/chatglm2-tiny"), "tokenizer.model"));
        var ids = Enumerable.Range(0, src.Count).ToArray();
        var copy = RoundTrip(SentencePieceModelWriter.Write(ids.Select(src.Piece).ToArray(), ids.Select(src.Score).ToArray(),
            ids.Select(src.Type).ToArray(), src.ByteFallback, src.AddDummyPrefix, src.RemoveExtraWhitespaces, src.EscapeWhitespaces));
        AssertSame(src, copy);
        const string text = "Hello world, 你好 ✓ tea time";
        Assert.Equal(src.Encode(text), copy.Encode(text));
    }

    [Fact]
    public void Mismatched_lengths_throw()
    {
        Assert.Throws<ArgumentException>(() => SentencePieceModelWriter.Write(["a", "b"], [0f], [PieceType.Normal, PieceType.Normal]));
    }
}
