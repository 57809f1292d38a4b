using System.CommandLine;
using Hub.Converters.Formats;
using Hub.IR;

namespace Hub.Cli.Commands;

/// <summary>
/// <c>hub convert &lt;model&gt; &lt;out.gguf&gt; --to gguf [--gguf-type f32|f16|bf16|q8_0|q4_0]</c>: the model is exported to
/// Hub IR first (or read as is when it already is an IR folder), then written as a llama.cpp GGUF file.
/// </summary>
public sealed class GgufConvert
{
    /// <summary><c>--to ir|gguf</c> (default: gguf when the output ends with .gguf).</summary>
    public Option<string?> To { get; } = new("--to") { Description = "output format: ir (default) or gguf (llama.cpp); .gguf outputs imply gguf" };

    /// <summary><c>--gguf-type</c>: type of the 2-D weights in the GGUF file.</summary>
    public Option<string> GgufType { get; } = new("--gguf-type") { Description = "GGUF weight type: f32, f16, bf16, q8_0, q4_0", DefaultValueFactory = _ => "f16" };

    /// <summary>Adds the GGUF options to <c>hub convert</c>.</summary>
    public static GgufConvert AddTo(Command convert)
    {
        var g = new GgufConvert();
        convert.Options.Add(g.To); convert.Options.Add(g.GgufType);
        return g;
    }

    /// <summary>True when the user asked for GGUF output.</summary>
    public bool Requested(ParseResult r, string output) =>
        (r.GetValue(To)?.ToLowerInvariant() ?? (output.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase) ? "gguf" : "ir")) switch
        {
            "gguf" => true,
            "ir" => false,
            var other => throw new ArgumentException($"--to '{other}' is not one of ir, gguf"),
        };

    /// <summary>Converts <paramref name="input"/> to GGUF at <paramref name="output"/>; returns the exit code.</summary>
    public int Run(ParseResult r, string input, string output, ModelOptions options)
    {
        var type = GgufLlamaExporter.ParseType(r.GetValue(GgufType) ?? "f16");
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var irDir = IrModel.Exists(input) ? input : ExportFor(ModelLocator.Resolve(input, options), options, type);
        using var ir = IrModel.Load(irDir);
        var result = GgufLlamaExporter.Export(ir, output, type);
        foreach (var f in result.Fallbacks) Console.Error.WriteLine($"note: {f}");
        Console.WriteLine($"wrote {result.Tensors} tensors ({result.Type}, {result.Bytes / 1048576.0:F1} MiB{(result.CopiedExact > 0 ? $", {result.CopiedExact} quantized tensors copied exactly from the IR" : "")}) → {result.Path} in {sw.Elapsed.TotalSeconds:F1} s");
        return 0;
    }

    /// <summary>
    /// The IR export a GGUF of <paramref name="type"/> is written from. With no <c>--weight-format</c> (Auto), an export
    /// already in the cache is reused when it carries the same numbers: the one <c>hub bench --peer</c> makes for this
    /// type (<see cref="HubOptionsFor"/>), or a float32 one; otherwise the Auto export is made (once, then cached).
    /// </summary>
    internal static string ExportFor(string source, ModelOptions options, GgmlType type)
    {
        if (options.WeightFormat == WeightFormat.Auto)
            foreach (var candidate in new[] { options, HubOptionsFor(type, options), CliRunner.WeightArgs.With(options, WeightFormat.F32) })
                if (Exporter.TryGetCached(source, candidate, out var cached))
                {
                    if (!ReferenceEquals(candidate, options)) Console.Error.WriteLine($"note: reusing the cached {candidate.WeightFormat} export {cached}");
                    return cached;
                }
        return Exporter.GetOrCreateCached(source, options);
    }

    /// <summary>
    /// Hub export options whose weights are exactly a GGUF of <paramref name="type"/>: F32/F16/BF16 as is, Q8_0/Q4_0 as
    /// int8/int4 in symmetric groups of 32 (int4 on all layers, since the GGUF holds every matrix as Q4_0), which the
    /// GGUF writer copies block for block.
    /// </summary>
    internal static ModelOptions HubOptionsFor(GgmlType type, ModelOptions o)
    {
        var format = type switch
        {
            GgmlType.F32 => WeightFormat.F32,
            GgmlType.F16 => WeightFormat.F16,
            GgmlType.BF16 => WeightFormat.BF16,
            GgmlType.Q8_0 => WeightFormat.Int8,
            _ => WeightFormat.Int4,
        };
        bool quantized = format is WeightFormat.Int8 or WeightFormat.Int4;
        return CliRunner.WeightArgs.With(o, format, groupSize: quantized ? 32 : null, symmetric: quantized ? true : null, allLayers: format == WeightFormat.Int4);
    }

    /// <summary>
    /// The GGUF of an exported model, cached beside its IR as <c>gguf/model-TYPE.gguf</c> and rewritten when the IR
    /// is newer.
    /// </summary>
    public static string Cached(string irDir, GgmlType type)
    {
        var path = CachePath(irDir, type);
        if (IsCached(irDir, type)) return path;
        using var ir = IrModel.Load(irDir);
        GgufLlamaExporter.Export(ir, path, type);
        return path;
    }

    /// <summary>True when <see cref="Cached"/> would return the GGUF already there (written after every input of it).</summary>
    public static bool IsCached(string irDir, GgmlType type)
    {
        var path = CachePath(irDir, type);
        // Stale when any input the GGUF is made from is newer: the graph, the weights or the tokenizer files.
        var inputs = new[] { IrFormat.JsonFile, IrFormat.BinFile, "config.json", "tokenizer.model", "tokenizer.json" }
            .Select(f => Path.Combine(irDir, f)).Where(File.Exists)
            .Concat(Directory.Exists(irDir) ? Directory.EnumerateFiles(irDir, "tok*.bin") : []);
        var newest = inputs.Select(File.GetLastWriteTimeUtc).DefaultIfEmpty(DateTime.MaxValue).Max();
        return File.Exists(path) && File.GetLastWriteTimeUtc(path) >= newest;
    }

    private static string CachePath(string irDir, GgmlType type) => Path.Combine(irDir, "gguf", $"model-{type.ToString().ToLowerInvariant()}.gguf");
}
