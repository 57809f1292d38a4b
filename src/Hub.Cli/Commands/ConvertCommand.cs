using System.CommandLine;

namespace Hub.Cli.Commands;

/// <summary><c>hub convert &lt;input&gt; &lt;out&gt;</c>: any supported checkpoint layout → Hub IR folder.</summary>
public static class ConvertCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var input = new Argument<string>("input") { Description = "checkpoint folder or file (HF, Meta consolidated, llama2.c .bin, FlagAI), or hub repo id" };
        var output = new Argument<string>("out") { Description = "output IR folder" };
        var from = new Option<string?>("--from") { Description = "source layout: hf, meta, llama2c, aquila (default: detect)" };
        var dtype = new Option<string>("--dtype", "--weight-format") { Description = "weight precision: auto, f32, f16, bf16", DefaultValueFactory = _ => "auto" };
        var sub = new Option<string?>("--subfolder") { Description = "folder inside the repo" };
        var cmd = new Command("convert", "Convert a checkpoint into a Hub IR folder (streams one tensor at a time).") { input, output, from, dtype, sub };
        var gguf = GgufConvert.AddTo(cmd);
        cmd.SetAction(r => CliRunner.Run(() =>
        {
            var format = (r.GetValue(dtype) ?? "auto").ToLowerInvariant() switch
            {
                "auto" => WeightFormat.Auto,
                "f32" or "fp32" or "float32" => WeightFormat.F32,
                "f16" or "fp16" or "float16" => WeightFormat.F16,
                "bf16" or "bfloat16" => WeightFormat.BF16,
                var other => throw new ArgumentException($"--dtype '{other}' is not one of auto, f32, f16, bf16"),
            };
            var options = new ModelOptions { SourceFormat = r.GetValue(from), WeightFormat = format, Subfolder = r.GetValue(sub), Progress = new Progress<string>(m => Console.Error.WriteLine(m)) };
            if (gguf.Requested(r, r.GetValue(output)!)) return gguf.Run(r, r.GetValue(input)!, r.GetValue(output)!, options);
            var src = ModelLocator.Resolve(r.GetValue(input)!, options);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var (arch, graph) = Exporter.Export(src, r.GetValue(output)!, options);
            long bytes = graph.Weights.Sum(w => w.Length);
            Console.WriteLine($"converted {arch}: {graph.Nodes.Count} nodes, {graph.Weights.Count} weights ({bytes / 1048576.0:F1} MiB) → {Path.GetFullPath(r.GetValue(output)!)} in {sw.Elapsed.TotalSeconds:F1} s");
            return 0;
        }));
        return cmd;
    }
}
