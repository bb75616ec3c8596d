// sa_core — the shift-add accelerator: `datapaths` (NDP) sa_pe datapaths side by side, each
// running its own list of output channels (the host deals a layer's non-pruned channels to the
// datapaths in turn), a start/done handshake and a cycle counter. Parameters are the target
// file's fields (docs/hardware.md): DPW = datapath_bits, GUARD = guard_bits, CSD_EN = variant
// csd (the csd recoder; mode_csd picks it at run time), subword "product".
// Memory ports of datapath i are slices [i*W +: W] of the flat buses.
module sa_core #(
    parameter integer NDP = 8,
    parameter integer DPW = 32,
    parameter integer GUARD = 0,
    parameter integer WMAX = 8,
    parameter integer WMIN = 1,
    parameter integer AMAX = 8,
    parameter integer AMIN = 2,
    parameter integer CSD_EN = 1,
    parameter integer KW = 12,
    parameter integer PW = 12,
    parameter integer CW = 8,
    parameter integer DW = 6,
    parameter integer EW = 13,
    parameter integer LMAX = DPW / (AMIN + WMIN + GUARD)
) (
    input wire clk,
    input wire rst,
    input wire start,
    input wire mode_csd,
    input wire [3:0] abits,
    input wire [PW:0] npos,
    input wire [NDP*(DW+1)-1:0] ndesc,
    output wire [NDP*DW-1:0] desc_addr,
    input wire [NDP*(CW+4+EW+EW+1)-1:0] desc_data,
    input wire [NDP*32-1:0] desc_init,
    output wire [NDP*EW-1:0] ent_addr,
    input wire [NDP*(KW+WMAX)-1:0] ent_data,
    output wire [NDP*KW-1:0] act_k,
    output wire [NDP*PW-1:0] act_p0,
    input wire [NDP*LMAX*AMAX-1:0] act_data,
    output wire [NDP-1:0] out_we,
    output wire [NDP*CW-1:0] out_ch,
    output wire [NDP*PW-1:0] out_p0,
    output wire [NDP*(PW+1)-1:0] out_count,
    output wire [NDP*LMAX*32-1:0] out_data,
    output wire done,
    output reg [47:0] cycles  // clocks from start until the last datapath finishes
`ifdef SQ_ACTIVITY
    , output wire [NDP*64-1:0] activity
`endif
);
  localparam integer DDW = CW + 4 + EW + EW + 1;
  wire [NDP-1:0] busy, pe_done;
  genvar i;
  generate
    for (i = 0; i < NDP; i = i + 1) begin : dp
      sa_pe #(
          .DPW(DPW), .GUARD(GUARD), .WMAX(WMAX), .WMIN(WMIN), .AMAX(AMAX), .AMIN(AMIN),
          .CSD_EN(CSD_EN), .KW(KW), .PW(PW), .CW(CW), .DW(DW), .EW(EW), .LMAX(LMAX)
      ) pe (
          .clk(clk), .rst(rst), .start(start), .mode_csd(mode_csd), .abits(abits), .npos(npos),
          .ndesc(ndesc[i*(DW+1)+:DW+1]),
          .desc_addr(desc_addr[i*DW+:DW]), .desc_data(desc_data[i*DDW+:DDW]),
          .desc_init(desc_init[i*32+:32]),
          .ent_addr(ent_addr[i*EW+:EW]), .ent_data(ent_data[i*(KW+WMAX)+:KW+WMAX]),
          .act_k(act_k[i*KW+:KW]), .act_p0(act_p0[i*PW+:PW]),
          .act_data(act_data[i*LMAX*AMAX+:LMAX*AMAX]),
          .out_we(out_we[i]), .out_ch(out_ch[i*CW+:CW]), .out_p0(out_p0[i*PW+:PW]),
          .out_count(out_count[i*(PW+1)+:PW+1]), .out_data(out_data[i*LMAX*32+:LMAX*32]),
          .busy(busy[i]), .done(pe_done[i])
`ifdef SQ_ACTIVITY
          , .activity(activity[i*64+:64])
`endif
      );
    end
  endgenerate

  assign done = &pe_done;
  always @(posedge clk) begin
    if (rst || start) cycles <= 48'd0;
    else if (|busy) cycles <= cycles + 48'd1;
  end
endmodule
