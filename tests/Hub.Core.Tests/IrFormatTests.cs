using System.Text.Json.Nodes;
using Hub.IR;
using Hub.Weights;

namespace Hub.Core.Tests;

public class IrFormatTests : IDisposable
{
    private readonly string _dir = Hub.Tests.SharedDir.TempDir("ir");

    public void Dispose() => Directory.Delete(_dir, true);

    private static ModelExport TinyExport(float[] w, float[] bias)
    {
        var b = new GraphBuilder("toy");
        var x = b.Input("x", DType.F32, "batch", 3);
        var wt = b.Weight("lin.weight", LazyTensor.FromArray(w, new Shape(2, 3), "test"), WeightKind.Matrix);
        var bs = b.Weight("lin.bias", LazyTensor.FromArray(bias, new Shape(2), "test"), WeightKind.Vector);
        var y = b.Op(Ops.Linear, "lin", [x, wt, bs], new { note = "keep" });
        b.State("past.0.key", DType.F32, "batch", 1, "ctx", 2);
        b.Output(y, DType.F32, "batch", 2);
        b.Metadata["task"] = "test";
        return b.Build();
    }

    [Fact]
    public void Round_trip_preserves_graph_weights_and_alignment()
    {
        float[] w = [1, 2, 3, 4, 5, 6];
        float[] bias = [0.5f, -0.5f];
        IrFormat.Write(_dir, TinyExport(w, bias), new IrWriteOptions { WeightDType = DType.F16 });
        using var ir = IrModel.Load(_dir);
        Assert.Equal("toy", ir.Graph.ModelType);
        Assert.Equal("test", (string?)ir.Graph.Metadata["task"]);
        var node = Assert.Single(ir.Graph.Nodes);
        Assert.Equal(Ops.Linear, node.Op);
        Assert.Equal("keep", node.GetString("note"));
        Assert.Equal(new Dim[] { "batch", 3 }, ir.Graph.Inputs[0].Shape);
        Assert.Equal("ctx", ir.Graph.States[0].Shape[2].Symbol);
        var lw = ir.GetWeight("lin.weight");
        Assert.Equal(DType.F16, lw.DType); // matrices follow WeightDType
        Assert.Equal(w, lw.ToFloat32());
        var lb = ir.GetWeight("lin.bias");
        Assert.Equal(DType.F32, lb.DType); // vectors are always f32
        Assert.Equal(bias, lb.ToFloat32());
        foreach (var info in ir.Graph.Weights) Assert.Equal(0, info.Offset % IrFormat.Alignment);
        Assert.True(ir.VerifyChecksum());
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp*"));
    }

    [Fact]
    public unsafe void Loading_an_ir_maps_weights_instead_of_reading_them_into_managed_memory()
    {
        const int rows = 1024, cols = 2048; // 8 MiB of float32
        var big = new float[rows * cols];
        for (int i = 0; i < big.Length; i++) big[i] = i % 97;
        var b = new GraphBuilder("toy");
        var x = b.Input("x", DType.F32, "batch", cols);
        var w = b.Weight("w", LazyTensor.FromArray(big, new Shape(rows, cols), "test"), WeightKind.Matrix);
        b.Output(b.Op(Ops.Linear, "y", [x, w]), DType.F32, "batch", rows);
        IrFormat.Write(_dir, b.Build());

        long before = GC.GetAllocatedBytesForCurrentThread();
        using var ir = IrModel.Load(_dir);
        var view = ir.GetWeight("w");
        float probe = ((float*)view.Pointer)[12345];
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(12345 % 97, probe);
        Assert.True(allocated < 1 << 20, $"loading allocated {allocated} managed bytes for an 8 MiB weight");
    }

    [Fact]
    public void Bin_shorter_than_index_throws_naming_file()
    {
        IrFormat.Write(_dir, TinyExport([1, 2, 3, 4, 5, 6], [0, 0]));
        var bin = Path.Combine(_dir, IrFormat.BinFile);
        using (var fs = new FileStream(bin, FileMode.Open)) fs.SetLength(fs.Length - 3);
        var e = Assert.Throws<IrFormatException>(() => IrModel.Load(_dir));
        Assert.Contains(IrFormat.BinFile, e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void Missing_bin_throws()
    {
        IrFormat.Write(_dir, TinyExport([1, 2, 3, 4, 5, 6], [0, 0]));
        File.Delete(Path.Combine(_dir, IrFormat.BinFile));
        Assert.Throws<IrFormatException>(() => IrModel.Load(_dir));
    }

    [Fact]
    public void Corrupted_bin_fails_checksum()
    {
        IrFormat.Write(_dir, TinyExport([1, 2, 3, 4, 5, 6], [0, 0]));
        var bin = Path.Combine(_dir, IrFormat.BinFile);
        var bytes = File.ReadAllBytes(bin);
        bytes[0] ^= 0xFF;
        File.WriteAllBytes(bin, bytes);
        using var ir = IrModel.Load(_dir);
        Assert.False(ir.VerifyChecksum());
    }

    [Theory]
    [InlineData("not json at all", "not valid JSON")]
    [InlineData("{\"format\": \"other\"}", "format")]
    [InlineData("{\"format\": \"hub-ir\", \"version\": 99}", "version 99")]
    public void Malformed_json_throws_typed_error(string json, string fragment)
    {
        File.WriteAllText(Path.Combine(_dir, IrFormat.JsonFile), json);
        var e = Assert.Throws<IrFormatException>(() => IrModel.Load(_dir));
        Assert.Contains(fragment, e.Message);
        Assert.Contains(IrFormat.JsonFile, e.Message);
    }

    [Fact]
    public void Weight_past_declared_size_throws()
    {
        IrFormat.Write(_dir, TinyExport([1, 2, 3, 4, 5, 6], [0, 0]));
        var path = Path.Combine(_dir, IrFormat.JsonFile);
        var doc = JsonNode.Parse(File.ReadAllText(path))!;
        doc["weights"]!["tensors"]![0]!["offset"] = 1 << 20;
        File.WriteAllText(path, doc.ToJsonString());
        var e = Assert.Throws<IrFormatException>(() => IrModel.Load(_dir));
        Assert.Contains("lin.weight", e.Message);
    }

    [Fact]
    public void Unknown_op_in_ir_throws()
    {
        IrFormat.Write(_dir, TinyExport([1, 2, 3, 4, 5, 6], [0, 0]));
        var path = Path.Combine(_dir, IrFormat.JsonFile);
        var doc = JsonNode.Parse(File.ReadAllText(path))!;
        doc["nodes"]![0]!["op"] = "Teleport";
        File.WriteAllText(path, doc.ToJsonString());
        var e = Assert.Throws<IrFormatException>(() => IrModel.Load(_dir));
        Assert.Contains("Teleport", e.Message);
    }

    [Fact]
    public void Graph_builder_rejects_use_before_definition()
    {
        var b = new GraphBuilder("toy");
        b.Op(Ops.Relu, "r", ["nowhere"]);
        Assert.Throws<InvalidOperationException>(() => b.Build());
    }
}
