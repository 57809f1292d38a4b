// The vocabulary llama.cpp's "llama" (SentencePiece) tokenizer reads from GGUF: tokenizer.ggml.tokens/scores/token_type
// and the special ids. Token types are sentencepiece's (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte).
using System.Text;
using Hub.Tokenization;

namespace Hub.Converters.Formats;

/// <summary>A SentencePiece-style vocabulary as GGUF stores it.</summary>
/// <param name="Tokens">Pieces, with <c>▁</c> for spaces.</param>
/// <param name="Scores">Merge scores.</param>
/// <param name="Types">sentencepiece piece types.</param>
/// <param name="Bos">BOS id.</param>
/// <param name="Eos">EOS id.</param>
/// <param name="Unk">Unknown id.</param>
public sealed record GgufVocab(string[] Tokens, float[] Scores, int[] Types, int Bos, int Eos, int Unk)
{
    /// <summary>
    /// Reads the tokenizer beside an exported model: <c>tokenizer.model</c> (SentencePiece) or a llama2.c <c>tok*.bin</c>
    /// / <c>tokenizer.bin</c>, padded with unused pieces up to <paramref name="vocabSize"/> (the embedding's rows).
    /// </summary>
    public static GgufVocab Load(string dir, int vocabSize)
    {
        var spm = Path.Combine(dir, "tokenizer.model");
        GgufVocab v;
        if (File.Exists(spm))
        {
            var m = SentencePieceModel.Load(spm);
            int n = Math.Min(m.Count, vocabSize);
            v = new GgufVocab(
                Enumerable.Range(0, n).Select(m.Piece).ToArray(),
                Enumerable.Range(0, n).Select(m.Score).ToArray(),
                Enumerable.Range(0, n).Select(i => (int)m.Type(i)).ToArray(),
                m.BosId >= 0 ? m.BosId : 1, m.EosId >= 0 ? m.EosId : 2, m.UnkId);
        }
        else if (Directory.EnumerateFiles(dir, "tok*.bin").Concat(Directory.EnumerateFiles(dir, "tokenizer.bin")).FirstOrDefault() is { } bin)
        {
            var t = Llama2cTokenizer.Load(bin, vocabSize);
            var tokens = new string[vocabSize];
            var types = new int[vocabSize];
            var scores = new float[vocabSize];
            for (int i = 0; i < vocabSize; i++)
            {
                // llama2.c's export wrote "▁" as " " and BOS/EOS as "\n<s>\n" / "\n</s>\n"; undo both.
                var piece = Encoding.UTF8.GetString(t.PieceBytes(i)).Replace(' ', '\u2581');
                scores[i] = t.Score(i);
                (tokens[i], types[i]) = i switch
                {
                    0 => ("<unk>", 2),
                    Llama2cTokenizer.Bos => ("<s>", 3),
                    Llama2cTokenizer.Eos => ("</s>", 3),
                    _ when piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece.EndsWith('>') => (piece, 6),
                    _ => (piece, 1),
                };
            }
            v = new GgufVocab(tokens, scores, types, Llama2cTokenizer.Bos, Llama2cTokenizer.Eos, 0);
        }
        else
        {
            throw new ModelFileNotFoundException(Path.Combine(dir, "tokenizer.model"),
                "GGUF needs a SentencePiece vocabulary: put tokenizer.model (or a llama2.c tok*.bin) beside the exported model");
        }
        return v.PaddedTo(vocabSize);
    }

    /// <summary>This vocabulary with unused <c>[PADn]</c> pieces appended up to <paramref name="n"/> entries.</summary>
    public GgufVocab PaddedTo(int n)
    {
        if (Tokens.Length >= n) return this;
        int k = Tokens.Length;
        return this with
        {
            Tokens = Tokens.Concat(Enumerable.Range(k, n - k).Select(i => $"[PAD{i}]")).ToArray(),
            Scores = Scores.Concat(Enumerable.Repeat(-1e9f, n - k)).ToArray(),
            Types = Types.Concat(Enumerable.Repeat(5, n - k)).ToArray(),
        };
    }

    /// <summary>
    /// A deterministic LLaMA-like vocabulary for generated benchmark models: &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;, the 256
    /// byte pieces, then <c>▁</c>-prefixed and bare letter strings with descending scores, <paramref name="n"/> in all.
    /// </summary>
    public static GgufVocab Synthesize(int n)
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { 2, 3, 3 };
        for (int b = 0; b < 256; b++) { tokens.Add($"<0x{b:X2}>"); types.Add(6); }
        var seen = new HashSet<string>(tokens, StringComparer.Ordinal);
        const string letters = "etaoinshrdlcumwfgypbvkjxqz";
        for (int i = 0; tokens.Count < n; i++)
        {
            // Base-26 strings of growing length, alternately with and without the word-start marker.
            var sb = new StringBuilder();
            for (int x = i / 2 + 1; x > 0; x = (x - 1) / 26) sb.Insert(0, letters[(x - 1) % 26]);
            var piece = (i % 2 == 0 ? "\u2581" : "") + sb;
            if (seen.Add(piece)) { tokens.Add(piece); types.Add(1); }
        }
        var scores = Enumerable.Range(0, n).Select(i => i < 259 ? 0f : -(i - 259)).ToArray();
        return new GgufVocab(tokens.Take(n).ToArray(), scores, types.Take(n).ToArray(), 1, 2, 0);
    }
}
