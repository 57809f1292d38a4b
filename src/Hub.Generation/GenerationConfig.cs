// GenerationConfig follows transformers' GenerationConfig (generation/configuration_utils.py): the same field names
// (snake_case in generation_config.json), the same defaults (max_length 20, top_k 50, temperature 1, ...), and a
// record of which fields were set explicitly so that per-call overrides only replace what the caller set.
// Not supported: constraints, guidance, assistant models, group (diverse) beam search.

using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Hub.Generation;

/// <summary>How beam search decides it is done (transformers' <c>early_stopping</c>: <c>false</c>, <c>true</c> or <c>"never"</c>).</summary>
[JsonConverter(typeof(EarlyStoppingJsonConverter))]
public enum EarlyStoppingMode
{
    /// <summary><c>false</c>: stop when no running beam can, by a length-based heuristic, beat the worst finished one.</summary>
    Heuristic,
    /// <summary><c>true</c>: stop as soon as <c>num_beams</c> finished candidates exist.</summary>
    True,
    /// <summary><c>"never"</c>: stop only when it is certain no better candidate can appear (canonical beam search).</summary>
    Never,
}

/// <summary>A generation setting is invalid or contradicts another one; <see cref="Fields"/> names them.</summary>
public sealed class GenerationConfigException : HubException
{
    /// <summary>The offending fields, by their Hugging Face names.</summary>
    public IReadOnlyList<string> Fields { get; }

    /// <summary>Creates the exception; the message is prefixed with the field names.</summary>
    public GenerationConfigException(IReadOnlyList<string> fields, string message)
        : base($"generation config ({string.Join(", ", fields)}): {message}") => Fields = fields;
}

/// <summary>
/// Decoding settings with Hugging Face's names and defaults, loaded from <c>generation_config.json</c> and overridable per
/// call with <see cref="Merge"/>: only the fields a caller actually set replace the model's defaults.
/// </summary>
public sealed class GenerationConfig
{
    private readonly HashSet<string> _set = new(StringComparer.Ordinal);

    private int? _maxNewTokens, _maxLength, _minNewTokens, _topK, _noRepeat, _pad, _bos, _numBeams, _numReturn;
    private bool? _doSample, _includeStop;
    private float? _temperature, _topP, _minP, _typicalP, _repetition, _presence, _frequency, _lengthPenalty;
    private int[]? _eos;
    private int[][]? _badWords;
    private string[]? _stopStrings;
    private EarlyStoppingMode? _early;
    private ulong? _seed;

    /// <summary>Tokens to generate, prompt excluded; wins over <see cref="MaxLength"/> when set.</summary>
    [JsonPropertyName("max_new_tokens")] public int? MaxNewTokens { get => _maxNewTokens; set { _maxNewTokens = value; Mark(); } }
    /// <summary>Total length (prompt + new tokens), used when <see cref="MaxNewTokens"/> is unset; default 20 as in transformers.</summary>
    [JsonPropertyName("max_length")] public int MaxLength { get => _maxLength ?? 20; set { _maxLength = value; Mark(); } }
    /// <summary>End-of-sequence ids are masked until this many tokens were generated.</summary>
    [JsonPropertyName("min_new_tokens")] public int MinNewTokens { get => _minNewTokens ?? 0; set { _minNewTokens = value; Mark(); } }
    /// <summary>Sample from the warped distribution instead of taking the argmax.</summary>
    [JsonPropertyName("do_sample")] public bool DoSample { get => _doSample ?? false; set { _doSample = value; Mark(); } }
    /// <summary>Logits are divided by it before sampling; must be &gt; 0 with sampling.</summary>
    [JsonPropertyName("temperature")] public float Temperature { get => _temperature ?? 1f; set { _temperature = value; Mark(); } }
    /// <summary>Keep the k most likely tokens when sampling (0 = off); default 50 as in transformers.</summary>
    [JsonPropertyName("top_k")] public int TopK { get => _topK ?? 50; set { _topK = value; Mark(); } }
    /// <summary>Nucleus sampling: keep the smallest set of tokens whose probability mass reaches it; in (0, 1].</summary>
    [JsonPropertyName("top_p")] public float TopP { get => _topP ?? 1f; set { _topP = value; Mark(); } }
    /// <summary>Drop tokens less likely than <c>min_p</c> × the top probability (null = off).</summary>
    [JsonPropertyName("min_p")] public float? MinP { get => _minP; set { _minP = value; Mark(); } }
    /// <summary>Locally typical sampling mass in (0, 1] (1 = off).</summary>
    [JsonPropertyName("typical_p")] public float TypicalP { get => _typicalP ?? 1f; set { _typicalP = value; Mark(); } }
    /// <summary>CTRL repetition penalty over prompt and output tokens (1 = off).</summary>
    [JsonPropertyName("repetition_penalty")] public float RepetitionPenalty { get => _repetition ?? 1f; set { _repetition = value; Mark(); } }
    /// <summary>No n-gram of this size occurs twice in prompt + output (0 = off).</summary>
    [JsonPropertyName("no_repeat_ngram_size")] public int NoRepeatNgramSize { get => _noRepeat ?? 0; set { _noRepeat = value; Mark(); } }
    /// <summary>Token sequences that must never be generated.</summary>
    [JsonPropertyName("bad_words_ids")] public int[][]? BadWordsIds { get => _badWords; set { _badWords = value; Mark(); } }
    /// <summary>OpenAI-style: subtracted once from the logit of every token already generated (0 = off).</summary>
    [JsonPropertyName("presence_penalty")] public float PresencePenalty { get => _presence ?? 0f; set { _presence = value; Mark(); } }
    /// <summary>OpenAI-style: subtracted per occurrence from the logit of generated tokens (0 = off).</summary>
    [JsonPropertyName("frequency_penalty")] public float FrequencyPenalty { get => _frequency ?? 0f; set { _frequency = value; Mark(); } }
    /// <summary>Every id here ends a sequence (JSON accepts one int or a list).</summary>
    [JsonPropertyName("eos_token_id"), JsonConverter(typeof(IntOrListJsonConverter))]
    public int[]? EosTokenId { get => _eos; set { _eos = value; Mark(); } }
    /// <summary>Fed for padding and for rows that already finished; defaults to the first eos id.</summary>
    [JsonPropertyName("pad_token_id")] public int? PadTokenId { get => _pad; set { _pad = value; Mark(); } }
    /// <summary>Beginning-of-sequence id (informational; prompts carry their own prefix).</summary>
    [JsonPropertyName("bos_token_id")] public int? BosTokenId { get => _bos; set { _bos = value; Mark(); } }
    /// <summary>Stop when the decoded continuation contains any of these, even across or inside tokens.</summary>
    [JsonPropertyName("stop_strings"), JsonConverter(typeof(StringOrListJsonConverter))]
    public string[]? StopStrings { get => _stopStrings; set { _stopStrings = value; Mark(); } }
    /// <summary>Keep the matched stop string at the end of the output text.</summary>
    [JsonPropertyName("include_stop_str_in_output")] public bool IncludeStopStrInOutput { get => _includeStop ?? false; set { _includeStop = value; Mark(); } }
    /// <summary>Beam width (1 = greedy or sampling).</summary>
    [JsonPropertyName("num_beams")] public int NumBeams { get => _numBeams ?? 1; set { _numBeams = value; Mark(); } }
    /// <summary>Beam scores are divided by length^length_penalty (&gt; 0 favours longer sequences).</summary>
    [JsonPropertyName("length_penalty")] public float LengthPenalty { get => _lengthPenalty ?? 1f; set { _lengthPenalty = value; Mark(); } }
    /// <summary>Beam search stopping rule.</summary>
    [JsonPropertyName("early_stopping")] public EarlyStoppingMode EarlyStopping { get => _early ?? EarlyStoppingMode.Heuristic; set { _early = value; Mark(); } }
    /// <summary>Sequences returned per prompt (≤ num_beams for beam search; any with sampling).</summary>
    [JsonPropertyName("num_return_sequences")] public int NumReturnSequences { get => _numReturn ?? 1; set { _numReturn = value; Mark(); } }
    /// <summary>Seed of the sampling RNG: the same seed gives the same text (null = random).</summary>
    [JsonPropertyName("seed")] public ulong? Seed { get => _seed; set { _seed = value; Mark(); } }

    /// <summary>Whether a property (by C# name, e.g. <c>nameof(TopK)</c>) was set explicitly.</summary>
    public bool IsSet(string propertyName) => _set.Contains(propertyName);

    private void Mark([CallerMemberName] string name = "") => _set.Add(name);

    private static readonly PropertyInfo[] Settable = typeof(GenerationConfig)
        .GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite).ToArray();

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        NumberHandling = JsonNumberHandling.AllowReadingFromString,
    };

    /// <summary>Reads <c>generation_config.json</c>; unknown fields are ignored, bad values name the field.</summary>
    public static GenerationConfig FromFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new ModelFileNotFoundException(path, "generation_config.json is optional: omit it or pass the folder that holds it");
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses generation_config.json text; <paramref name="source"/> names it in errors.</summary>
    public static GenerationConfig Parse(string json, string source = "generation_config.json")
    {
        try
        {
            return JsonSerializer.Deserialize<GenerationConfig>(json, JsonOptions)
                   ?? throw new ConfigException(source, "$", "the file holds null instead of an object");
        }
        catch (JsonException e)
        {
            var field = string.IsNullOrEmpty(e.Path) ? "$" : e.Path.TrimStart('$', '.');
            throw new ConfigException(source, field, $"invalid value ({e.Message}); fix or remove the field", e);
        }
    }

    /// <summary>generation_config.json text holding the fields that were set (so defaults stay transformers' defaults).</summary>
    public string ToJson()
    {
        var obj = new System.Text.Json.Nodes.JsonObject();
        foreach (var p in Settable)
        {
            if (!_set.Contains(p.Name)) continue;
            var name = p.GetCustomAttribute<JsonPropertyNameAttribute>()!.Name;
            var converter = p.GetCustomAttribute<JsonConverterAttribute>()?.ConverterType;
            var options = new JsonSerializerOptions(JsonOptions);
            if (converter is not null) options.Converters.Add((JsonConverter)Activator.CreateInstance(converter)!);
            obj[name] = JsonSerializer.SerializeToNode(p.GetValue(this), p.PropertyType, options);
        }
        return obj.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Writes <see cref="ToJson"/> to <paramref name="path"/> (through a temporary file, so a crash leaves no half-written file).</summary>
    public void Save(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        var tmp = path + ".tmp-" + Guid.NewGuid().ToString("N");
        File.WriteAllText(tmp, ToJson());
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>A copy of this config.</summary>
    public GenerationConfig Clone() => new GenerationConfig().MergeInto(this);

    /// <summary>
    /// This config with the fields <paramref name="overrides"/> set explicitly replacing ours (per-call settings over the
    /// model's generation_config.json); neither input is modified.
    /// </summary>
    public GenerationConfig Merge(GenerationConfig? overrides)
    {
        var result = Clone();
        return overrides is null ? result : result.MergeInto(overrides);
    }

    private GenerationConfig MergeInto(GenerationConfig source)
    {
        foreach (var p in Settable)
        {
            if (!source._set.Contains(p.Name)) continue;
            var v = p.GetValue(source);
            p.SetValue(this, v switch { int[] a => a.ToArray(), string[] s => s.ToArray(), int[][] b => b.Select(x => x.ToArray()).ToArray(), _ => v });
        }
        return this;
    }

    /// <summary>
    /// Rejects invalid values and contradictory combinations, naming the fields (transformers' <c>validate()</c>, with
    /// its warnings promoted to errors where the result would silently differ from what was asked).
    /// </summary>
    public void Validate()
    {
        static void Fail(string message, params string[] fields) => throw new GenerationConfigException(fields, message);

        if (MaxNewTokens is { } mnt && mnt < 1) Fail($"must be at least 1, got {mnt}", "max_new_tokens");
        if (MaxNewTokens is null && MaxLength < 1) Fail($"must be at least 1, got {MaxLength}", "max_length");
        if (MinNewTokens < 0) Fail($"must be >= 0, got {MinNewTokens}", "min_new_tokens");
        if (MaxNewTokens is { } m2 && MinNewTokens > m2) Fail($"min_new_tokens ({MinNewTokens}) exceeds max_new_tokens ({m2})", "min_new_tokens", "max_new_tokens");
        if (NumBeams < 1) Fail($"must be at least 1, got {NumBeams}", "num_beams");
        if (NumReturnSequences < 1) Fail($"must be at least 1, got {NumReturnSequences}", "num_return_sequences");
        if (!DoSample && NumReturnSequences > NumBeams)
            Fail($"num_return_sequences ({NumReturnSequences}) > num_beams ({NumBeams}) without sampling would return copies of the same sequence; raise num_beams or set do_sample", "num_return_sequences", "num_beams", "do_sample");
        if (NumBeams > 1 && NumReturnSequences > NumBeams)
            Fail($"num_return_sequences ({NumReturnSequences}) > num_beams ({NumBeams}): beam search (sampled or not) returns at most num_beams sequences; raise num_beams", "num_return_sequences", "num_beams");
        if (DoSample && !(Temperature > 0) ) Fail($"must be > 0 when do_sample is true (got {Temperature}); use do_sample = false for greedy decoding", "temperature", "do_sample");
        if (!float.IsFinite(Temperature)) Fail($"must be finite, got {Temperature}", "temperature");
        if (TopK < 0) Fail($"must be >= 0 (0 disables it), got {TopK}", "top_k");
        if (!(TopP > 0 && TopP <= 1)) Fail($"must be in (0, 1], got {TopP}", "top_p");
        if (MinP is { } mp && !(mp >= 0 && mp <= 1)) Fail($"must be in [0, 1], got {mp}", "min_p");
        if (!(TypicalP > 0 && TypicalP <= 1)) Fail($"must be in (0, 1], got {TypicalP}", "typical_p");
        if (!(RepetitionPenalty > 0) || !float.IsFinite(RepetitionPenalty)) Fail($"must be a positive number (1 = off), got {RepetitionPenalty}", "repetition_penalty");
        if (NoRepeatNgramSize < 0) Fail($"must be >= 0, got {NoRepeatNgramSize}", "no_repeat_ngram_size");
        if (!float.IsFinite(PresencePenalty)) Fail("must be finite", "presence_penalty");
        if (!float.IsFinite(FrequencyPenalty)) Fail("must be finite", "frequency_penalty");
        if (!float.IsFinite(LengthPenalty)) Fail("must be finite", "length_penalty");
        if (BadWordsIds is { } bw)
            for (int i = 0; i < bw.Length; i++)
                if (bw[i] is null || bw[i].Length == 0 || bw[i].Any(id => id < 0))
                    Fail($"entry {i} must be a non-empty list of non-negative ids", "bad_words_ids");
        if (EosTokenId is { } eos && eos.Any(id => id < 0)) Fail($"ids must be >= 0, got [{string.Join(", ", eos)}]", "eos_token_id");
        if (PadTokenId is < 0) Fail($"must be >= 0, got {PadTokenId}", "pad_token_id");
        if (StopStrings is { } ss && ss.Any(string.IsNullOrEmpty)) Fail("stop strings must be non-empty", "stop_strings");
        if (NumBeams > 1 && StopStrings is { Length: > 0 }) Fail("stop strings are not supported with beam search; use eos_token_id", "stop_strings", "num_beams");
    }

    /// <summary>New tokens allowed for a (padded) prompt of <paramref name="promptLength"/> tokens.</summary>
    public int ResolveMaxNewTokens(int promptLength)
    {
        if (MaxNewTokens is { } n) return n;
        var left = MaxLength - promptLength;
        if (left < 1)
            throw new GenerationConfigException(new[] { "max_length", "max_new_tokens" },
                $"the prompt has {promptLength} tokens but max_length is {MaxLength}, leaving no room to generate; set max_new_tokens (preferred) or raise max_length");
        return left;
    }
}

/// <summary>Reads an int or a list of ints (eos_token_id); writes a list.</summary>
internal sealed class IntOrListJsonConverter : JsonConverter<int[]?>
{
    public override int[]? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        switch (reader.TokenType)
        {
            case JsonTokenType.Null: return null;
            case JsonTokenType.Number: return new[] { reader.GetInt32() };
            case JsonTokenType.StartArray:
                var list = new List<int>();
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                {
                    if (reader.TokenType != JsonTokenType.Number) throw new JsonException("expected an integer id in the list");
                    list.Add(reader.GetInt32());
                }
                return list.ToArray();
            default: throw new JsonException("expected an integer id or a list of ids");
        }
    }

    public override void Write(Utf8JsonWriter writer, int[]? value, JsonSerializerOptions options)
    {
        if (value is null) { writer.WriteNullValue(); return; }
        writer.WriteStartArray();
        foreach (var v in value) writer.WriteNumberValue(v);
        writer.WriteEndArray();
    }
}

/// <summary>Reads a string or a list of strings (stop_strings); writes a list.</summary>
internal sealed class StringOrListJsonConverter : JsonConverter<string[]?>
{
    public override string[]? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        switch (reader.TokenType)
        {
            case JsonTokenType.Null: return null;
            case JsonTokenType.String: return new[] { reader.GetString()! };
            case JsonTokenType.StartArray:
                var list = new List<string>();
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                {
                    if (reader.TokenType != JsonTokenType.String) throw new JsonException("expected a string in the list");
                    list.Add(reader.GetString()!);
                }
                return list.ToArray();
            default: throw new JsonException("expected a string or a list of strings");
        }
    }

    public override void Write(Utf8JsonWriter writer, string[]? value, JsonSerializerOptions options)
    {
        if (value is null) { writer.WriteNullValue(); return; }
        writer.WriteStartArray();
        foreach (var v in value) writer.WriteStringValue(v);
        writer.WriteEndArray();
    }
}

/// <summary>Reads <c>true</c>, <c>false</c> or <c>"never"</c>.</summary>
internal sealed class EarlyStoppingJsonConverter : JsonConverter<EarlyStoppingMode>
{
    public override EarlyStoppingMode Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.TokenType switch
    {
        JsonTokenType.True => EarlyStoppingMode.True,
        JsonTokenType.False => EarlyStoppingMode.Heuristic,
        JsonTokenType.String when reader.GetString() == "never" => EarlyStoppingMode.Never,
        _ => throw new JsonException("expected true, false or \"never\""),
    };

    public override void Write(Utf8JsonWriter writer, EarlyStoppingMode value, JsonSerializerOptions options)
    {
        switch (value)
        {
            case EarlyStoppingMode.True: writer.WriteBooleanValue(true); break;
            case EarlyStoppingMode.Never: writer.WriteStringValue("never"); break;
            default: writer.WriteBooleanValue(false); break;
        }
    }
}
