// Writes the subset of sentencepiece_model.proto (ModelProto) that SentencePieceModel reads: pieces (field 1: piece,
// score, type), trainer_spec (field 2: model_type, byte_fallback) and normalizer_spec (field 3: name, add_dummy_prefix,
// remove_extra_whitespaces, escape_whitespaces). No precompiled character map: the normalizer is always identity.
using System.Buffers.Binary;
using System.Text;

namespace Hub.Tokenization;

/// <summary>
/// Encodes a SentencePiece BPE <c>tokenizer.model</c> protobuf, the inverse of <see cref="SentencePieceModel.Load"/>; used
/// to give generated checkpoints (benchmark models, tests) a tokenizer that Hub, sentencepiece and llama.cpp all read.
/// </summary>
public static class SentencePieceModelWriter
{
    /// <summary>
    /// The ModelProto bytes of a BPE model with these pieces (parallel arrays, id = index). Byte fallback and the
    /// normalizer flags default to LLaMA's tokenizer.model.
    /// </summary>
    public static byte[] Write(IReadOnlyList<string> pieces, IReadOnlyList<float> scores, IReadOnlyList<PieceType> types,
        bool byteFallback = true, bool addDummyPrefix = true, bool removeExtraWhitespaces = false, bool escapeWhitespaces = true)
    {
        ArgumentNullException.ThrowIfNull(pieces);
        ArgumentNullException.ThrowIfNull(scores);
        ArgumentNullException.ThrowIfNull(types);
        if (scores.Count != pieces.Count)
            throw new ArgumentException($"{pieces.Count} pieces need as many scores, got {scores.Count}", nameof(scores));
        if (types.Count != pieces.Count)
            throw new ArgumentException($"{pieces.Count} pieces need as many types, got {types.Count}", nameof(types));
        var o = new MemoryStream();
        var m = new MemoryStream();
        Span<byte> f32 = stackalloc byte[4];
        for (int i = 0; i < pieces.Count; i++)
        {
            m.SetLength(0);
            if (pieces[i] is null) throw new ArgumentException($"piece {i} is null", nameof(pieces));
            if (!Enum.IsDefined(types[i])) throw new ArgumentException($"piece {i} ('{pieces[i]}') has undefined type {(int)types[i]}", nameof(types));
            Bytes(m, 1, Encoding.UTF8.GetBytes(pieces[i]));
            Key(m, 2, 5); BinaryPrimitives.WriteSingleLittleEndian(f32, scores[i]); m.Write(f32);
            Key(m, 3, 0); Varint(m, (ulong)types[i]);
            Bytes(o, 1, m.ToArray());
        }
        var trainer = new MemoryStream();
        Key(trainer, 3, 0); Varint(trainer, 2);                               // model_type BPE
        Key(trainer, 35, 0); Varint(trainer, byteFallback ? 1UL : 0);         // byte_fallback
        Bytes(o, 2, trainer.ToArray());
        var norm = new MemoryStream();
        Bytes(norm, 1, "identity"u8.ToArray());
        Key(norm, 3, 0); Varint(norm, addDummyPrefix ? 1UL : 0);              // add_dummy_prefix
        Key(norm, 4, 0); Varint(norm, removeExtraWhitespaces ? 1UL : 0);      // remove_extra_whitespaces
        Key(norm, 5, 0); Varint(norm, escapeWhitespaces ? 1UL : 0);           // escape_whitespaces
        Bytes(o, 3, norm.ToArray());
        return o.ToArray();
    }

    private static void Key(Stream s, int field, int wire) => Varint(s, (ulong)((field << 3) | wire));

    private static void Varint(Stream s, ulong x)
    {
        while (x >= 0x80) { s.WriteByte((byte)(x | 0x80)); x >>= 7; }
        s.WriteByte((byte)x);
    }

    private static void Bytes(Stream s, int field, byte[] b)
    {
        Key(s, field, 2);
        Varint(s, (ulong)b.Length);
        s.Write(b);
    }
}
