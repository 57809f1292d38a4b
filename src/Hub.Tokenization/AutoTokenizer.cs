using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;

namespace Hub.Tokenization;

/// <summary>
/// Picks and loads the right tokenizer for a model folder from the files it holds, as transformers' AutoTokenizer
/// does: tokenizer.json (byte-level BPE), vocab.json + merges.txt (GPT-2), vocab.txt (WordPiece/BERT), tokenizer.model
/// (SentencePiece; ChatGLM when the config says so), tok*.bin (llama2.c).
/// </summary>
public static class AutoTokenizer
{
    /// <summary>Files looked for, in order (named in the error when none is found).</summary>
    public static readonly IReadOnlyList<string> KnownFiles = new[] { "tokenizer.json", "vocab.json + merges.txt", "vocab.txt", "tokenizer.model", "tok*.bin / tokenizer.bin (llama2.c)" };

    /// <summary>Loads the tokenizer of the model folder <paramref name="dir"/>.</summary>
    public static HubTokenizer FromPretrained(string dir)
    {
        ArgumentNullException.ThrowIfNull(dir);
        if (!Directory.Exists(dir)) throw new ModelFileNotFoundException(dir, "the model folder does not exist; download the model first or check the path");
        var cfg = TokenizerConfig.Load(dir);
        var modelConfig = TokenizerConfig.ReadObject(Path.Combine(dir, "config.json"));
        string P(string name) => Path.Combine(dir, name);

        var tokenizerJson = P("tokenizer.json");
        var spModel = P("tokenizer.model");
        string? tjModelType = null;
        if (File.Exists(tokenizerJson))
        {
            tjModelType = ReadModelType(tokenizerJson);
            if (tjModelType is null or "BPE" && !IsSentencePieceBpeJson(tokenizerJson) ) return ByteLevelBpeTokenizer.FromTokenizerJson(tokenizerJson, cfg);
        }
        if (File.Exists(P("vocab.json")) && File.Exists(P("merges.txt")))
            return ByteLevelBpeTokenizer.FromVocabAndMerges(P("vocab.json"), P("merges.txt"), cfg);
        if (File.Exists(P("vocab.txt")))
            return BertWordPieceTokenizer.FromPretrained(dir, cfg, modelConfig);
        if (File.Exists(spModel))
        {
            if (IsTiktokenFormat(spModel))
                throw new TokenizerException($"{spModel} is a tiktoken-format rank file (base64 token + rank per line, as GLM-4 ships), not a SentencePiece model; " +
                                             "this tokenizer format is not supported for this model");
            bool chatGlm = cfg.TokenizerClass?.StartsWith("ChatGLM", StringComparison.OrdinalIgnoreCase) == true
                           || (modelConfig?["model_type"] is JsonValue mt && mt.TryGetValue<string>(out var m) && m.StartsWith("chatglm", StringComparison.OrdinalIgnoreCase));
            return chatGlm ? ChatGlmTokenizer.FromPretrained(dir, cfg) : SentencePieceTokenizer.FromPretrained(dir, cfg);
        }
        var tokBin = Directory.EnumerateFiles(dir, "tok*.bin").OrderBy(f => f, StringComparer.Ordinal).FirstOrDefault();
        if (tokBin is not null)
        {
            int? vocab = modelConfig?["vocab_size"] is JsonValue vs && vs.TryGetValue<int>(out var v) ? v : Llama2cVocabFromCheckpoint(dir, tokBin);
            return vocab is { } n ? Llama2cTokenizer.Load(tokBin, n) : Llama2cTokenizer.Load(tokBin);
        }
        if (File.Exists(P("ice_text.model")))
            throw new TokenizerException($"{P("ice_text.model")}: ChatGLM-6B v1's icetk tokenizer is not supported; pass input ids directly or use a ChatGLM2/3 checkpoint");
        if (tjModelType is not null)
            throw new TokenizerException($"{tokenizerJson}: model.type '{tjModelType}' is not supported without a vocab.txt / tokenizer.model beside it");
        throw new ModelFileNotFoundException(Path.Combine(dir, "tokenizer.json"),
            $"no tokenizer files in {dir}; looked for {string.Join(", ", KnownFiles)}. Download the tokenizer files with the model");
    }

    private static string? ReadModelType(string path)
    {
        var root = TokenizerConfig.ReadObject(path);
        return root?["model"]?["type"] is JsonValue t && t.TryGetValue<string>(out var s) ? s : null;
    }

    // LLaMA-style tokenizer.json files are BPE with byte_fallback and a Metaspace pre-tokenizer: use tokenizer.model.
    private static bool IsSentencePieceBpeJson(string path)
    {
        var root = TokenizerConfig.ReadObject(path);
        if (root?["model"]?["byte_fallback"] is JsonValue bf && bf.TryGetValue<bool>(out var b) && b
            && File.Exists(Path.Combine(Path.GetDirectoryName(path)!, "tokenizer.model"))) return true;
        var pt = root?["pre_tokenizer"]?["type"] is JsonValue t && t.TryGetValue<string>(out var s) ? s : null;
        return pt == "Metaspace" && File.Exists(Path.Combine(Path.GetDirectoryName(path)!, "tokenizer.model"));
    }

    /// <summary>True when the file's first line is <c>base64 rank</c> (tiktoken), not protobuf.</summary>
    public static bool IsTiktokenFormat(string path)
    {
        using var s = File.OpenRead(path);
        var buf = new byte[256];
        int n = s.Read(buf, 0, buf.Length);
        int nl = Array.IndexOf(buf, (byte)'\n', 0, n);
        if (nl <= 0) return false;
        var line = Encoding.ASCII.GetString(buf, 0, nl).TrimEnd('\r');
        int sp = line.IndexOf(' ');
        if (sp <= 0 || !int.TryParse(line.AsSpan(sp + 1), out _)) return false;
        foreach (var c in line.AsSpan(0, sp))
            if (!(char.IsAsciiLetterOrDigit(c) || c is '+' or '/' or '=')) return false;
        return true;
    }

    // A llama2.c checkpoint beside the tokenizer: the 7-int header's 6th field is ±vocab_size.
    private static int? Llama2cVocabFromCheckpoint(string dir, string tokBin)
    {
        foreach (var f in Directory.EnumerateFiles(dir, "*.bin").OrderBy(f => f, StringComparer.Ordinal))
        {
            if (f == tokBin || Path.GetFileName(f).StartsWith("tok", StringComparison.Ordinal)) continue;
            if (MappedFile.LengthOf(f) < 28) continue;
            using var s = File.OpenRead(f);
            var h = new byte[28];
            s.ReadExactly(h);
            int dim = BinaryPrimitives.ReadInt32LittleEndian(h), vocab = Math.Abs(BinaryPrimitives.ReadInt32LittleEndian(h.AsSpan(20)));
            if (dim > 0 && dim < 1 << 16 && vocab > 0 && vocab < 1 << 22) return vocab;
        }
        return null;
    }
}
